"""The committed results of a full run: complete, self-consistent, and what docs/cli.md quotes.

``results/04_mnist_distillation.json`` is written by the full run of notebook 04 that is
committed with its outputs. These tests recompute its statistics from its per-seed numbers
with :mod:`kdlib.stats`, and check that docs/cli.md and the notebook quote the same numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import lazy_import

from kdlib import stats

nbformat = lazy_import("nbformat")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "04_mnist_distillation.json"
STUDENTS = ("scratch", "smoothed", "distilled")
COMPARISONS = {
    "distilled_vs_scratch": ("scratch", "distilled"),
    "distilled_vs_smoothed": ("smoothed", "distilled"),
    "smoothed_vs_scratch": ("scratch", "smoothed"),
}


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f}"


def test_the_committed_run_is_a_full_run_of_the_protocol(results):
    assert results["seeds"] >= 5 and len(results["seed_list"]) == results["seeds"]
    assert results["test_images"] == 10_000
    assert results["stopping"]["monitor"] == "val_accuracy"
    assert results["stopping"]["restore_best_weights"] is True
    for name in STUDENTS:
        report = results[name]
        n = results["seeds"]
        assert len(report["test_accuracies"]) == len(report["best_epochs"]) == n
        for best, run in zip(report["best_epochs"], report["epochs_run"]):
            assert 1 <= best <= run <= results["stopping"]["max_epochs"]
            # Stopped by the rule (patience after the best) or by the budget.
            assert run == min(
                best + results["stopping"]["patience"], results["stopping"]["max_epochs"]
            )


def test_the_per_seed_numbers_agree_with_the_summaries(results):
    n = results["test_images"]
    for name in STUDENTS:
        report = results[name]
        accuracies = report["test_accuracies"]
        assert report["test_accuracy"] == pytest.approx(np.mean(accuracies))
        assert report["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert report["test_errors_per_seed"] == [round(n * (1 - a)) for a in accuracies]
        assert report["test_errors"] == round(np.mean(report["test_errors_per_seed"]))


@pytest.mark.parametrize("key", sorted(COMPARISONS))
def test_the_statistics_recomputed_from_the_per_seed_numbers(results, key):
    a, b = COMPARISONS[key]
    c = results["comparisons"][key]
    assert (c["a"], c["b"]) == (a, b)
    acc_a, acc_b = results[a]["test_accuracies"], results[b]["test_accuracies"]
    assert c["differences"] == pytest.approx(np.subtract(acc_b, acc_a))
    ci = stats.mean_ci(c["differences"])
    assert (c["mean_difference"], c["ci95_low"], c["ci95_high"]) == pytest.approx(
        (ci.mean, ci.low, ci.high)
    )
    t = stats.paired_t_test(acc_a, acc_b)
    assert (c["t_statistic"], c["t_p_value"]) == pytest.approx((t.statistic, t.p_value))
    n = results["test_images"]
    for seed, m in enumerate(c["mcnemar_per_seed"]):
        # Accuracies differ by (only_b - only_a) / n on the same images.
        assert m["only_b"] - m["only_a"] == round(n * c["differences"][seed])
        assert m["p_value"] == pytest.approx(
            stats.mcnemar_from_counts(m["only_a"], m["only_b"]).p_value
        )
    pooled = c["mcnemar_pooled"]
    assert pooled["only_a"] == sum(m["only_a"] for m in c["mcnemar_per_seed"])
    assert pooled["only_b"] == sum(m["only_b"] for m in c["mcnemar_per_seed"])


def _docs_results_section() -> str:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    start = text.index("**Results of a full run.**")
    end = text.find("\n## ", start)
    return text[start:] if end == -1 else text[start:end]


def test_the_docs_quote_the_committed_numbers(results):
    section = _docs_results_section()
    assert "results/04_mnist_distillation.json" in section
    for name in ("teacher", *STUDENTS):
        report = results[name]
        accuracy = f"{100 * report['test_accuracy']:.2f}"
        if name != "teacher":
            accuracy += f" ± {100 * report['test_accuracy_std']:.2f}"
        assert accuracy in section, (name, accuracy)
    for key in COMPARISONS:
        c = results["comparisons"][key]
        for value in (c["mean_difference"], c["ci95_low"], c["ci95_high"]):
            assert _points(value) in section, (key, _points(value))
        p = c["t_p_value"]
        assert p is None or math.isnan(p) or f"{p:.2g}" in section, (key, p)
    minutes = f"{results['seconds'] / 60:.1f} min"
    assert minutes in section


def test_the_notebook_printed_the_same_numbers():
    """The JSON was written by the committed full run of notebook 04, not by another run."""
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    nb = nbformat.read(ROOT / "notebooks" / "04_mnist_distillation.ipynb", as_version=4)
    printed = "".join(
        out.get("text", "") + "".join(out.get("data", {}).get("text/markdown", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    for name in STUDENTS:
        report = results[name]
        assert (
            f"{100 * report['test_accuracy']:.2f} ± {100 * report['test_accuracy_std']:.2f}"
            in (printed)
        )
    assert f"{results['seconds']:.0f} s on" in printed
