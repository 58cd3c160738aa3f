"""benchmarks/distill_speed.py: a fair comparison (the same loss in every row).

Speed itself is never asserted here: it depends on the machine. This checks that the rows
of the benchmark optimise the same loss, so that their times compare like with like.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from reference import write_learnable_mnist

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "distill_speed.py"
TINY = ["--fast", "--examples", "256", "--batch-size", "64", "--epochs", "3"]


@pytest.fixture
def bench(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLIB_FAST", "1")  # --fast sets it; monkeypatch restores it
    # The loss does not depend on which images: a small MNIST-shaped file loads faster.
    write_learnable_mnist(tmp_path / "mnist.npz")
    monkeypatch.setenv("KDLIB_DATA_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("distill_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "distill_speed", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_rows_optimise_the_same_loss(bench):
    """kdlib (online and cached) and keras.distillation: same T, same weights, same loss."""
    args = bench.parse_args(TINY)
    data = bench.load_data(args)
    rows = {row.name: row for row in bench.build_rows(args, data, jit_compile=False)}
    losses = {}
    for name in ("kdlib_online", "kdlib_cached", "keras_distillation"):
        row = rows[name]
        result = row.model.evaluate(*row.fit_args, batch_size=64, verbose=0, return_dict=True)
        losses[name] = (result["loss"], result["student_loss"], result["distillation_loss"])
    for name in ("kdlib_cached", "keras_distillation"):
        np.testing.assert_allclose(losses[name], losses["kdlib_online"], rtol=1e-4)


def test_fewer_than_three_timed_epochs_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--epochs", "2"])
