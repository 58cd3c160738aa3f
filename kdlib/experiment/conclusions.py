"""What a run of the experiment shows, in words: paired statistics and conclusions.

:func:`format_statistics` prints every paired comparison of the students (per-seed
differences, mean with 95 % CI, paired t-test, McNemar's test per seed and pooled);
:func:`summary_markdown` turns a result into the Markdown conclusions that notebook 04
displays, so its prose never quotes a number that no cell printed.
"""

from __future__ import annotations

import math

from kdlib import stats
from kdlib.experiment.report import ExperimentResult, _p, _points, gain_sentence

__all__ = [
    "format_statistics",
    "summary_markdown",
]


def format_statistics(result: ExperimentResult) -> str:
    """Every paired comparison: per-seed differences, mean with 95 % CI, paired t-test, and
    McNemar's test per seed and pooled (differences in points of test accuracy)."""
    lines = []
    seeds = result.config.seed_list()
    for name, c in result.comparisons.items():
        lines.append(f"{c.b} - {c.a} ({name})")
        lines.append(
            "  per seed:  "
            + "  ".join(f"seed {seed}: {_points(d)}" for seed, d in zip(seeds, c.differences))
        )
        if math.isnan(c.mean.low):
            why = "one seed" if len(c.differences) < 2 else "the differences do not vary"
            lines.append(f"  mean {_points(c.mean.mean)} points ({why}: no CI, no t-test)")
        else:
            lines.append(
                f"  mean {_points(c.mean.mean)} points, 95 % CI [{_points(c.mean.low)}, "
                f"{_points(c.mean.high)}]; paired t-test t({c.t_test.df}) = "
                f"{c.t_test.statistic:.2f}, p = {_p(c.t_test.p_value)}"
            )
        lines.append(
            f"  McNemar per seed (only {c.a} right / only {c.b} right, exact p):  "
            + "  ".join(f"{m.only_a}/{m.only_b} p={_p(m.p_value)}" for m in c.mcnemar)
        )
        lines.append(
            f"  McNemar pooled over seeds: {c.pooled.only_a}/{c.pooled.only_b}, "
            f"p = {_p(c.pooled.p_value)} (the same test images counted once per seed)"
        )
    return "\n".join(lines)


def verdict(c: stats.PairedComparison) -> str:
    """Plain words for what a comparison shows (95 % CI of the mean difference)."""
    if len(c.differences) < 2:
        return "cannot be judged from one seed"
    if math.isnan(c.mean.low):
        return "cannot be judged: the per-seed differences do not vary"
    if c.mean.low > 0:
        return f"**{c.b} is better** (the whole 95 % CI is above 0)"
    if c.mean.high < 0:
        return f"**{c.b} is worse** (the whole 95 % CI is below 0)"
    return "**no clear difference** (the 95 % CI contains 0)"


def summary_markdown(result: ExperimentResult) -> str:
    """The conclusions of a run in Markdown, every number taken from ``result``.

    Notebook 04 displays this instead of quoting numbers in hand-written prose.
    """
    config = result.config
    lines = [
        f"**This run** ({config.seeds} seed(s), {result.num_test:,} test images, "
        f"{result.seconds / 60:.1f} min on {result.device}):",
        "",
        "| model | test accuracy % (mean ± std) | errors (mean) | best epochs per seed |",
        "| --- | --- | --- | --- |",
    ]
    for report in (result.teacher, *result.students()):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher":
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        lines.append(
            f"| {report.name} | {accuracy} | {report.test_errors} | "
            f"{', '.join(map(str, report.best_epochs))} |"
        )
    lines.append("")
    for c in result.comparisons.values():
        sentence = f"- {c.b} − {c.a}: {gain_sentence(c)}; McNemar pooled over seeds "
        sentence += (
            f"{c.pooled.only_a} vs {c.pooled.only_b} discordant images, "
            f"p = {_p(c.pooled.p_value)}. Verdict: {verdict(c)}."
        )
        lines.append(sentence)
    return "\n".join(lines)
