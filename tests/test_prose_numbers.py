"""The numbers the README and docs/ quote (docs/cli.md holds the results of full runs) are
the numbers in results/ and in the committed notebooks' outputs.

Each claim below formats a value read from a committed JSON file the way the prose writes
it, and checks that the prose contains it. A rerun that changes a result, or an edit that
changes a number in the prose, fails here until the two agree again. (The statistics of
notebook 04's run are checked, and recomputed, in ``tests/test_results.py``.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _prose(relative: str) -> str:
    """The file's text with every run of whitespace (line breaks too) as one space."""
    return re.sub(r"\s+", " ", (ROOT / relative).read_text(encoding="utf-8"))


def _notebook_outputs(relative: str) -> str:
    notebook = json.loads((ROOT / relative).read_text(encoding="utf-8"))
    return "".join(
        "".join(out.get("text", ""))
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    )


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _pm(values: list[float]) -> str:
    """``mean ± sample std`` in percent, as the tables write it."""
    return f"{_pct(np.mean(values))} ± {_pct(np.std(values, ddof=1))}"


def _load(pair: list[float] | float) -> str:
    return f"{pair[0] if isinstance(pair, list) else pair:.1f}"


def _sweep_claims() -> list[str]:
    claims = []
    for hidden in (50, 20):
        sweep = _json(f"sweep_mlp{hidden}.json")
        selected = sweep["selected"]
        gain = selected["gain_over_scratch"]
        claims.append(
            f"| {hidden} units | T = {selected['temperature']:g}, alpha = {selected['alpha']:g} "
            f"| {_pm(selected['values'])} % | {_pm(sweep['scratch_summary']['values'])} % "
            f"| {100 * gain['mean']:+.2f} ± {100 * gain['std']:.2f} points |"
        )
    claims.append(f"teacher {_pct(_json('sweep_mlp50.json')['teacher']['test_accuracy'])} %")
    return claims


def _sweep_time_claims() -> list[str]:
    first, rerun, small = (
        _json("sweep_mlp50.json"),
        _json("sweep_mlp50_rerun.json"),
        _json("sweep_mlp20.json"),
    )
    s50, s_rerun = first["seconds"]["students"], rerun["seconds"]["students"]
    return [
        f"trained stacked in **{s50:.0f} s** ({s50 / 60:.1f} min; teacher and data another "
        f"{first['seconds']['teacher_and_data']:.0f} s)",
        f"load average at {_load(first['load_average']['start'])} → "
        f"{_load(first['load_average']['end'])} on 2 cores",
        f"The 20-unit grid took {small['seconds']['students']:.0f} s (load "
        f"{_load(small['load_average']['start'])} → {_load(small['load_average']['end'])})",
        f"load average {_load(rerun['load_average']['start'])} → "
        f"{_load(rerun['load_average']['end'])}): **{s_rerun:.0f} s** ({s_rerun / 60:.1f} min;",
        f"took {s_rerun / 60:.1f} or {s50 / 60:.1f} minutes",
        f"against the {s50:.0f} s measured",
    ]


def _speed_claims() -> list[str]:
    speed = _json("sweep_speed_full_grid.json")
    per_epoch = speed["seconds_per_epoch"]["stacked"][-1]
    steps = math.ceil(speed["examples"] / speed["batch_size"])
    return [
        f"| full grid, {speed['students']} students, {speed['epochs']} epochs "
        f"({_load(speed['load_average']['before'])} → {_load(speed['load_average']['after'])}) "
        f"| {speed['seconds']['stacked']:.1f} s | {speed['seconds']['one_at_a_time']:.1f} s "
        f"| **{speed['speedup']:.1f}×** | **{speed['speedup_after_first_epoch']:.1f}×** |",
        f"{per_epoch:.0f} s per epoch, {1000 * per_epoch / steps:.0f} ms per step",
    ]


def _hinton_claims() -> list[str]:
    table = _json("hinton_mnist.json")
    ours, paper = table["ours"], table["paper"]
    rows = [f"| {ours[k]} | {paper[k]} |" for k in ("teacher", "scratch", "distilled")]
    return [
        *rows,
        f"results/hinton_mnist.json # {table['seconds']['total']:.0f} s",
        f"Wall time {table['seconds']['total']:.0f} s (load average "
        f"{_load(table['load_average']['start'])} → {_load(table['load_average']['end'])}",
        f"Distillation removes {ours['scratch'] - ours['distilled']} of the scratch student's "
        f"{ours['scratch']} errors",
    ]


def _attempt_claims() -> list[str]:
    first = _json("hinton_mnist_attempt_cnn_online.json")
    longer = _json("hinton_mnist_attempt_cnn_online_30ep.json")
    val_images = 5000
    t4, t20 = first["per_temperature"]["4"], first["per_temperature"]["20"]
    v1, v2 = t4["val_errors"], longer["per_temperature"]["4"]["val_errors"]
    return [
        f"no jitter ({first['ours']['teacher']})",
        f"the same CNN ({longer['ours']['teacher']})",
        f"validation errors {v1}, against {t20['val_errors']} at T = 20",
        f"{v2} validation errors",
        f"| {first['ours']['distilled']} |",
        f"**{longer['ours']['distilled']}** (scratch at 30 epochs: {longer['ours']['scratch']})",
        f"_online.json # {first['seconds']['total']:.0f} s",
        f"_30ep.json # {longer['seconds']['total']:.0f} s",
        f"validation accuracy {_pct(1 - v1 / val_images)} → {_pct(1 - v2 / val_images)} %",
        f"test errors {first['ours']['distilled']} → {longer['ours']['distilled']}",
        f"Load averages: {_load(first['load_average']['start'])} → "
        f"{_load(first['load_average']['end'])} (attempt 1), "
        f"{_load(longer['load_average']['start'])} → {_load(longer['load_average']['end'])} "
        "(attempt 2)",
    ]


def _best_recipe_claims() -> list[str]:
    best = _json("hinton_mnist_best.json")
    ours, paper, sec = best["ours"], best["paper"], best["seconds"]
    by_cell = {(r["temperature"], r["alpha"]): r["val_errors"] for r in best["selection"]}
    return [
        f"--json results/hinton_mnist_best.json # {sec['total']:.0f} s",
        f"arithmetic mean, trained on shifted images | {ours['teacher']} | {paper['teacher']} |",
        f"(30 epochs, no shifts) | {ours['scratch']} | {paper['scratch']} |",
        f"T = {best['temperature']:g}, alpha = {best['alpha']:g}, {best['epochs']} epochs on "
        f"shifted views | **{ours['distilled']}** | {paper['distilled']} |",
        "The members alone made "
        + ", ".join(str(m["test_errors"]) for m in best["members"][:-1])
        + f" and {best['members'][-1]['test_errors']} test errors; their mean, {ours['teacher']}.",
        f"T = 2: {by_cell[(2.0, 0.1)]} (alpha 0.1), {by_cell[(2.0, 0.5)]} (0.5); "
        f"T = 4: {by_cell[(4.0, 0.1)]}, {by_cell[(4.0, 0.5)]}; "
        f"T = 8: {by_cell[(8.0, 0.1)]}, {by_cell[(8.0, 0.5)]}.",
        f"({best['val_errors']['distilled']} validation errors) came within "
        f"{best['val_errors']['distilled'] - best['val_errors']['teacher']} of its teacher "
        f"({best['val_errors']['teacher']}) on validation and within "
        f"{ours['distilled'] - ours['teacher']} on test",
        f"Wall time {sec['total']:.0f} s on 2 cores (teachers {sec['teachers']:.0f} s, the "
        f"teachers on all 25 views {sec['soft_targets']:.0f} s, selection "
        f"{sec['selection']:.0f} s, the {best['epochs']}-epoch student "
        f"{sec['final_student']:.0f} s)",
        f"(load average {_load(best['load_average']['start'])} → "
        f"{_load(best['load_average']['end'])})",
    ]


def _best_seeds_claims() -> list[str]:
    best, more = _json("hinton_mnist_best.json"), _json("hinton_mnist_best_seeds.json")
    for key in ("teacher", "transfer", "temperature", "alpha", "epochs", "scratch_epochs"):
        assert more[key] == best[key], key  # the same recipe, other student seeds
    rows = [
        (0, best["ours"]["scratch"], best["ours"]["distilled"], best["val_errors"]["distilled"])
    ]
    rows += [
        (
            r["seed"],
            r["scratch"]["test_errors"],
            r["distilled"]["test_errors"],
            r["distilled"]["val_errors"],
        )
        for r in more["student_seeds"]
    ]
    removed = [scratch - distilled for _, scratch, distilled, _ in rows]
    mean = float(np.mean(removed))
    half = 4.302652729911275 * float(np.std(removed, ddof=1)) / math.sqrt(3)  # t(0.975, 2)
    assert len(rows) == 3 and len({d for _, _, d, _ in rows}) == 1
    return [
        f"--json results/hinton_mnist_best_seeds.json # {more['seconds']['total']:.0f} s",
        *(
            f"| {seed} | {scratch} | {distilled} | {val} |"
            for seed, scratch, distilled, val in rows
        ),
        f"Every seed's distilled student made {rows[0][2]} test errors",
        f"are {mean:.1f} (95 % CI {mean - half:.1f} to {mean + half:.1f})",
    ]


def _spread_claims() -> list[str]:
    sweep = _json("sweep_mlp50.json")
    cells: dict[tuple[float, float], list[int]] = {}
    for r in sweep["records"]:
        cells.setdefault((r["temperature"], r["alpha"]), []).append(r["test_errors"])
    spreads = [np.std(v, ddof=1) for v in cells.values()]
    scratch = np.std([s["test_errors"] for s in sweep["scratch"]], ddof=1)
    return [
        f"a standard deviation of {min(spreads):.0f} to {max(spreads):.0f} test errors per "
        f"cell, {scratch:.0f} for scratch"
    ]


def _notebook05_claims() -> list[str]:
    printed = _notebook_outputs("notebooks/05_dark_knowledge.ipynb")
    errors = re.search(r"teacher: [\d,]+ parameters, (\d+) errors", printed)
    assert errors, "notebook 05 no longer prints its teacher's errors"
    return [f"the same CNN recipe, {errors.group(1)} test errors"]


def _readme_claims() -> list[str]:
    first, rerun = _json("sweep_mlp50.json"), _json("sweep_mlp50_rerun.json")
    speed = _json("sweep_speed_full_grid.json")
    table = _json("hinton_mnist.json")
    longer = _json("hinton_mnist_attempt_cnn_online_30ep.json")
    best = _json("hinton_mnist_best.json")["ours"]
    selected = first["selected"]
    ours, paper = table["ours"], table["paper"]
    return [
        f"took {rerun['seconds']['students']:.0f} s on 2 cores at a load average of "
        f"{_load(rerun['load_average']['start'])}–{_load(rerun['load_average']['end'])} "
        f"({first['seconds']['students']:.0f} s at {first['load_average']['start'][0]:.0f}–"
        f"{first['load_average']['end'][0]:.0f})",
        f"was {speed['speedup']:.1f}× faster than one student at a time over a "
        f"{speed['epochs']}-epoch run",
        f"and {speed['speedup_after_first_epoch']:.1f}× per epoch after the first",
        f"T = {selected['temperature']:g}, alpha = {selected['alpha']:g} won: "
        f"{_pm(selected['values'])} % test accuracy against "
        f"{_pm(first['scratch_summary']['values'])} % from scratch",
        f"({table['teacher_epochs']} teacher and {table['epochs']} student epochs, "
        f"{table['seconds']['total']:.0f} s): test errors {ours['teacher']} / "
        f"{ours['scratch']} / {ours['distilled']}",
        f"(paper: {paper['teacher']} / {paper['scratch']} / {paper['distilled']})",
        f"reached {longer['ours']['distilled']} errors",
        f"test errors {best['teacher']} / {best['scratch']} / {best['distilled']}.",
    ]


def _readme_experiment_claims() -> list[str]:
    run = _json("04_mnist_distillation.json")
    claims = [
        f"| teacher (CNN) | {_pct(run['teacher']['test_accuracy'])} | "
        f"{run['teacher']['test_errors']} | {run['teacher']['best_epoch']} of "
        f"{run['teacher']['epochs_run']} |"
    ]
    for name in ("scratch", "smoothed", "distilled"):
        r = run[name]
        epochs = ", ".join(str(e) for e in r["best_epochs"])
        claims.append(f"| {r['test_errors']} | {epochs} |")
    gains = run["comparisons"]["distilled_vs_scratch"]["differences"]
    beyond = run["comparisons"]["distilled_vs_smoothed"]["differences"]
    claims.append(f"({100 * min(gains):+.2f} to {100 * max(gains):+.2f} points)")
    claims.append(f"one seed's difference was {100 * min(beyond):+.2f}")
    for c in run["comparisons"].values():
        pooled = c["mcnemar_pooled"]
        claims.append(
            f"{pooled['only_a']} vs {pooled['only_b']} images, p = {pooled['p_value']:.2g}"
        )
    load = run["conditions"]["load_average_1min"]
    claims.append(f"{load['start']:.1f} at the start, {load['end']:.1f} at the end")
    return claims


def _mnist_experiment_claims() -> list[str]:
    run = _json("04_mnist_distillation.json")
    t, s = run["teacher"], run["scratch"]
    claims = [
        f"{t['params'] / s['params']:.1f}× fewer parameters (its `.keras` file is "
        f"{t['size_bytes'] / s['size_bytes']:.1f}×",
        f"A CNN ({t['params']:,} parameters)",
        f"{s['params']:,} parameters",
    ]
    reached = any(
        e >= run["stopping"]["max_epochs"]
        for name in ("scratch", "smoothed", "distilled")
        for e in run[name]["epochs_run"]
    )
    assert not reached, "the docs say that no model reached the epoch budget"
    return claims


def _reproducibility_claims() -> list[str]:
    check = _json("cpu_reproducibility.json")
    avx2 = check["avx2"]
    return [
        f"{avx2['reference_teacher_logits']['max_abs_difference']:.1g}",
        f"{avx2['teacher_logits']['max_abs_difference']:.2g}",
    ]


CLAIMS: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "dark_knowledge: sweep table": ("docs/dark_knowledge.md", _sweep_claims),
    "dark_knowledge: sweep times": ("docs/dark_knowledge.md", _sweep_time_claims),
    "dark_knowledge: stacked vs separate": ("docs/dark_knowledge.md", _speed_claims),
    "dark_knowledge: Hinton table": ("docs/dark_knowledge.md", _hinton_claims),
    "dark_knowledge: attempts": ("docs/dark_knowledge.md", _attempt_claims),
    "dark_knowledge: seed spread": ("docs/dark_knowledge.md", _spread_claims),
    "dark_knowledge: the recipe that beats 74": ("docs/dark_knowledge.md", _best_recipe_claims),
    "dark_knowledge: more student seeds": ("docs/dark_knowledge.md", _best_seeds_claims),
    "dark_knowledge: notebook 05": ("docs/dark_knowledge.md", _notebook05_claims),
    "cli: sweep and Hinton table": ("docs/cli.md", _readme_claims),
    "cli: notebook 04's run": ("docs/cli.md", _readme_experiment_claims),
    "mnist_experiment: sizes": ("docs/mnist_experiment.md", _mnist_experiment_claims),
    "mnist_experiment: reproducibility": ("docs/mnist_experiment.md", _reproducibility_claims),
}


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_the_prose_quotes_the_committed_results(name):
    relative, claims = CLAIMS[name]
    prose = _prose(relative)
    missing = [claim for claim in claims() if re.sub(r"\s+", " ", claim) not in prose]
    assert not missing, f"{relative} does not say (or no longer says) {missing}"


@pytest.mark.parametrize(
    "relative", ["README.md", "docs/cli.md", "docs/dark_knowledge.md", "docs/mnist_experiment.md"]
)
def test_no_internal_targets_in_the_prose(relative):
    """Student-facing text says what the paper got and what we got, not our own goals."""
    prose = _prose(relative)
    assert not re.search(r"\bgoal of ≤|\(goal[: ]|goal ≤", prose), relative


def test_a_wrong_number_is_caught(tmp_path, monkeypatch):
    """The check is not vacuous: the Hinton table's time, changed by one second, fails."""
    table = _json("hinton_mnist.json")
    wrong = f"Wall time {table['seconds']['total'] + 1:.0f} s"
    assert wrong not in _prose("docs/dark_knowledge.md")
    text = (ROOT / "docs" / "dark_knowledge.md").read_text(encoding="utf-8")
    right = f"Wall time {table['seconds']['total']:.0f} s"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "dark_knowledge.md").write_text(text.replace(right, wrong))
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="Wall time"):
        test_the_prose_quotes_the_committed_results("dark_knowledge: Hinton table")
