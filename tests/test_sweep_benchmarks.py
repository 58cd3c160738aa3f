"""benchmarks/sweep_speed.py and benchmarks/hinton_mnist.py run end to end (fast mode) and
write the JSON the issue names. Speed and errors are never asserted: they depend on the
machine and on the epochs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from helpers import SMALL_FAST_SIZES, small_fast_data

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def learnable(tmp_path, monkeypatch):
    """Fast mode, its data sizes cut to a tenth, on a learnable MNIST-shaped file (1,000
    training and 300 test images)."""
    small_fast_data(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("KDLIB_FAST", "1")
    return tmp_path


def test_sweep_speed_json(learnable, monkeypatch):
    bench = load("sweep_speed", monkeypatch)
    path = learnable / "speed.json"
    assert bench.main(["--fast", "--examples", "512", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report["seconds"]) == {"stacked", "one_at_a_time"}
    assert all(s > 0 for s in report["seconds"].values())
    ratio = report["seconds"]["one_at_a_time"] / report["seconds"]["stacked"]
    assert report["speedup"] == pytest.approx(ratio)
    assert report["students"] == 3 and report["epochs"] == 1  # 1 scratch + 2 T x 1 alpha
    assert len(report["load_average"]["before"]) == 3


def test_hinton_json_has_ours_and_the_papers(learnable, monkeypatch):
    bench = load("hinton_mnist", monkeypatch)
    path = learnable / "hinton.json"
    args = ["--fast", "--temperatures", "2", "20", "--work-dir", str(learnable / "teachers")]
    assert bench.main([*args, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["paper"] == {"teacher": 67, "scratch": 146, "distilled": 74}
    assert set(report["ours"]) == {"teacher", "scratch", "distilled"}
    assert report["test_images"] == SMALL_FAST_SIZES["test_size"]
    assert all(0 <= e <= report["test_images"] for e in report["ours"].values())
    chosen = min(report["selection"], key=lambda r: (r["val_errors"], r["temperature"]))
    assert [r["temperature"] for r in report["selection"]] == [2.0, 20.0]
    assert report["temperature"] == chosen["temperature"]  # on validation, not on test
    # --select-epochs 0: the chosen student itself is the one tested
    assert report["val_errors"]["distilled"] == chosen["val_errors"]
    assert report["transfer"] == "plain" and len(report["members"]) == 1


def test_hinton_best_recipe_runs_and_reuses_its_teachers(learnable, monkeypatch, capsys):
    """An ensemble of two teachers, the student on shifted views, (T, alpha) chosen in short
    runs then trained longer; a second run reuses the saved teachers."""
    bench = load("hinton_mnist", monkeypatch)
    work = learnable / "teachers"
    args = ["--fast", "--teacher", "mlp", "--members", "2", "--transfer", "views"]
    args += ["--temperatures", "2", "4", "--alphas", "0.1", "0.5", "--select-epochs", "1"]
    args += ["--epochs", "2", "--work-dir", str(work), "--json", str(learnable / "best.json")]
    assert bench.main(args) == 0
    report = json.loads((learnable / "best.json").read_text())
    assert len(report["members"]) == 2 and "2 x mlp (arithmetic mean)" in report["teacher"]
    assert len(report["selection"]) == 4 and {r["epochs"] for r in report["selection"]} == {1}
    best = min(report["selection"], key=lambda r: (r["val_errors"], r["temperature"], r["alpha"]))
    assert (report["temperature"], report["alpha"]) == (best["temperature"], best["alpha"])
    assert report["epochs"] == 2 and report["transfer"] == "views"
    assert len(list(work.glob("*.keras"))) == 2
    capsys.readouterr()
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--select-epochs") + 1] = "0"
    assert bench.main(args[:-2]) == 0
    assert capsys.readouterr().out.count("reusing") == 2


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--alphas", "1.5", "alpha"),
        ("--temperatures", "0", "temperatures"),
        ("--members", "0", "members"),
    ],
)
def test_hinton_refuses_bad_values_before_training(flag, value, message, monkeypatch, capsys):
    bench = load("hinton_mnist", monkeypatch)
    with pytest.raises(SystemExit):
        bench.parse_args(["--fast", flag, value])
    assert message in capsys.readouterr().err
