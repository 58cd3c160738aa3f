"""The committed results of notebook 08 (``results/08_better_teachers.json``): a full run of
the protocol, whose choices are the validation optimum and whose statistics follow from its
per-seed numbers (recomputed here with :mod:`kdlib.stats` and plain NumPy), and the numbers
the committed notebook printed.
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
RESULTS = ROOT / "results" / "08_better_teachers.json"
NOTEBOOK = ROOT / "notebooks" / "08_better_teachers.ipynb"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def _approx_or_none(value: float | None, expected: float) -> None:
    """A statistic that is undefined (NaN) is stored as null in the JSON."""
    if value is None:
        assert math.isnan(expected)
    else:
        assert value == pytest.approx(expected)


def test_the_committed_run_is_a_full_run_of_the_protocol(results):
    settings = results["settings"]
    assert settings["seeds"] >= 5 and results["test_images"] == 10_000
    assert settings["ensemble_sizes"] == [1, 3, 5, 10] and settings["members"] == 10
    members = np.asarray(results["ensembles"]["member_val_accuracy"])
    assert members.shape == (settings["seeds"], settings["members"])
    epochs = results["ensembles"]["member_epochs"] + results["ensembles"]["student_epochs"]
    assert all(1 <= e <= settings["epochs"] for e in epochs)
    for record in results["ensembles"]["results"].values():
        for key in ("ensemble_test", "student_test", "scratch_test", "student_val"):
            assert len(record[key]) == settings["seeds"], key


def test_t_and_alpha_are_the_validation_optimum(results):
    ensembles = results["ensembles"]
    for mean, chosen in ensembles["chosen"].items():
        rows = [r for r in ensembles["selection"] if r["mean"] == mean]
        best = max(rows, key=lambda r: r["val_accuracy"])  # the first of equal accuracies
        assert (chosen["temperature"], chosen["alpha"]) == (best["temperature"], best["alpha"])
    ban = results["born_again"]
    best = max(ban["selection"], key=lambda r: r["val_accuracy"])
    assert (ban["chosen"]["temperature"], ban["chosen"]["alpha"]) == (
        best["temperature"],
        best["alpha"],
    )


def test_an_ensemble_of_one_is_the_scratch_network(results):
    for record in results["ensembles"]["results"].values():
        if record["k"] == 1:
            assert record["ensemble_test"] == record["scratch_test"]
            assert record["share"] is None


def test_gains_and_shares_recomputed_from_the_per_seed_numbers(results):
    for name, record in results["ensembles"]["results"].items():
        student, scratch = record["student_test"], record["scratch_test"]
        gain = record["student_gain"]
        assert gain["differences"] == pytest.approx(np.subtract(student, scratch)), name
        ci = stats.mean_ci(gain["differences"])
        assert gain["mean_difference"] == pytest.approx(ci.mean)
        _approx_or_none(gain["ci95_low"], ci.low)
        _approx_or_none(gain["ci95_high"], ci.high)
        t = stats.paired_t_test(scratch, student)
        _approx_or_none(gain["t_p_value"], t.p_value)
        ensemble_gain = np.subtract(record["ensemble_test"], scratch)
        if record["share"] is not None:
            shares = (np.asarray(student) - scratch) / ensemble_gain
            assert record["share_per_seed"] == pytest.approx(shares), name
            share = stats.mean_ci(shares)
            assert record["share"]["mean"] == pytest.approx(share.mean)
            _approx_or_none(record["share"]["low"], share.low)
            _approx_or_none(record["share"]["high"], share.high)
        else:
            assert record["k"] == 1 or np.any(ensemble_gain <= 0), name


def test_born_again_comparisons_recomputed(results):
    ban = results["born_again"]
    accuracy = ban["test_accuracy"]
    generations = results["settings"]["generations"]
    assert {f"generation {g}" for g in range(generations + 1)} <= set(accuracy)
    assert ban["comparisons"], "no comparison recorded"
    for key, c in ban["comparisons"].items():
        a, b = c["a"], c["b"]
        assert key == f"{b} vs {a}"
        assert c["differences"] == pytest.approx(np.subtract(accuracy[b], accuracy[a]))
        ci = stats.mean_ci(c["differences"])
        assert c["mean_difference"] == pytest.approx(ci.mean)
        _approx_or_none(c["ci95_low"], ci.low)
        _approx_or_none(c["ci95_high"], ci.high)
        _approx_or_none(c["t_p_value"], stats.paired_t_test(accuracy[a], accuracy[b]).p_value)
        n = results["test_images"]
        for seed, m in enumerate(c["mcnemar_per_seed"]):
            assert m["only_b"] - m["only_a"] == round(n * c["differences"][seed])


def test_the_hinton_table_is_the_committed_benchmark(results):
    for name, table in results["hinton_mnist"].items():
        committed = json.loads((ROOT / "results" / name).read_text(encoding="utf-8"))
        assert table == {"ours": committed["ours"], "paper": committed["paper"]}, name


def test_the_notebook_printed_the_same_numbers(results):
    """The JSON was written by the committed full run of notebook 08, not by another run."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    printed = "".join(
        out.get("text", "") + out.get("data", {}).get("text/markdown", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    for record in results["ensembles"]["results"].values():
        row = (
            f"| {record['k']} | {record['mean']} | {100 * np.mean(record['ensemble_test']):.2f} "
            f"| {100 * np.mean(record['student_test']):.2f} |"
        )
        assert row in printed, row
    for name, values in results["born_again"]["test_accuracy"].items():
        assert f"{name:<36} test accuracy {100 * np.mean(values):.2f} %" in printed, name
    assert f"wall time {results['seconds']['total'] / 60:.1f} min" in printed
