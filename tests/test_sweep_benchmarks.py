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
    assert bench.main(["--fast", "--temperatures", "2", "20", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["paper"] == {"teacher": 67, "scratch": 146, "distilled": 74}
    assert set(report["ours"]) == {"teacher", "scratch", "distilled"}
    assert report["test_images"] == SMALL_FAST_SIZES["test_size"]
    assert all(0 <= e <= report["test_images"] for e in report["ours"].values())
    per_t = report["per_temperature"]
    chosen = min(per_t, key=lambda t: (per_t[t]["val_errors"], float(t)))
    assert report["temperature"] == float(chosen)  # chosen on validation, not on test
    assert report["ours"]["distilled"] == per_t[chosen]["test_errors"]
