"""Shared test set-up: the Agg backend, two logical CPUs, one toy data set, one Distiller
factory.

``tf.distribute.MirroredStrategy`` needs at least two devices. TensorFlow can split the CPU
into logical devices, but only before it initialises its runtime, so this happens in
``pytest_configure``, before any test module runs. Ops still run on ``/CPU:0`` unless a
strategy places them elsewhere. Nothing happens on the JAX and PyTorch backends.
"""

from __future__ import annotations

import atexit
import os
import sys

import matplotlib

matplotlib.use("Agg")  # before any test imports pyplot: no display needed, anywhere

import numpy as np  # noqa: E402
import pytest  # noqa: E402

NUM_LOGICAL_CPUS = 2
#: The toy problem of the Distiller tests: 96 "images" of 6 x 6 values, 10 classes.
INPUT_SHAPE, NUM_CLASSES, N = (6, 6), 10, 96
ALPHA, TEMPERATURE = 0.3, 4.0


def pytest_configure(config) -> None:
    worker = hasattr(config, "workerinput")
    if getattr(config.option, "numprocesses", None) and not worker:
        return  # the pytest-xdist controller runs no test: only its workers need TensorFlow
    _two_logical_cpus()
    if worker:  # registered after TensorFlow's exit handlers (if any), so it runs first
        atexit.register(_end_worker_now)


def _two_logical_cpus() -> None:
    import keras  # importing keras does not start TensorFlow's runtime; listing devices does

    if keras.backend.backend() != "tensorflow":
        return
    try:
        import tensorflow as tf
    except ImportError:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
        )
    except RuntimeError:
        # Already initialised (e.g. a plugin used TensorFlow first); the multi-device tests
        # then report that they could not get two devices.
        pass


def _end_worker_now() -> None:
    """A pytest-xdist worker's last act: its results are with the controller, which waits for
    the worker to end; skip the interpreter's teardown of TensorFlow."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: The test files that take longest (they train models), longest first (one process, fast
#: mode: ``pytest --durations`` shows it). Run first, so that ``make test``'s workers
#: (``--dist loadfile``: each file on one worker, which also computes each file's shared
#: reference run once) pick the long files up first and finish together. Only the order
#: changes.
LONGEST_FIRST = (
    "test_scaling.py",
    "test_experiment.py",
    "test_sweep_benchmarks.py",
    "test_distiller.py",
    "test_stacked.py",
    "test_soft_targets.py",
    "test_make_lab.py",
    "test_sweep.py",
    "test_export.py",
    "test_labserver.py",
    "test_runtime.py",
    "test_widgets.py",
    "test_notebooks.py",  # the first of these three on a worker imports nbformat
    "test_assignments.py",
    "test_results.py",
    "test_benchmark.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: same order within


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def toy_data() -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape (96, 6, 6) in [0, 1) (float32) and labels ``y`` in 0..9 (int32)."""
    rng = np.random.default_rng(0)
    x = rng.random((N, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, N).astype("int32")
    return x, y


def _mlp(seed: int, hidden: tuple[int, ...], dropout: float = 0.0, name: str = "mlp"):
    import keras

    from kdlib import models

    keras.utils.set_random_seed(seed)
    return models.mlp(hidden=hidden, dropout=dropout, input_shape=INPUT_SHAPE, name=name)


@pytest.fixture
def make_teacher():
    """``make_teacher(seed=1)``: an MLP teacher for the toy data (32 hidden units, with
    dropout, so that cached logits must be the inference-mode ones)."""
    return lambda seed=1: _mlp(seed, (32,), dropout=0.5, name="teacher")


@pytest.fixture
def make_student():
    """``make_student(seed=2)``: an MLP student for the toy data (16 hidden units)."""
    return lambda seed=2: _mlp(seed, (16,), name="student")


@pytest.fixture
def make_distiller(make_teacher, make_student):
    """``make_distiller(teacher=None, student=None, **compile_kwargs)``: a compiled
    Distiller, SGD(0.1), alpha 0.3, T = 4 and accuracy unless the arguments say otherwise."""

    def make(teacher=None, student=None, **compile_kwargs):
        import keras

        from kdlib import Distiller

        distiller = Distiller(
            teacher=make_teacher() if teacher is None else teacher,
            student=make_student() if student is None else student,
        )
        settings = {
            "optimizer": keras.optimizers.SGD(0.1),
            "metrics": ["accuracy"],
            "alpha": ALPHA,
            "temperature": TEMPERATURE,
        }
        distiller.compile(**{**settings, **compile_kwargs})
        return distiller

    return make


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a command (``kdlib distill`` or ``kdlib sweep``) gets as far as
    loading data or training."""
    from kdlib import experiment, sweep

    def refuse(*args, **kwargs):
        raise AssertionError("training started although a flag was invalid")

    monkeypatch.setattr(experiment, "run_experiment", refuse)
    monkeypatch.setattr(experiment, "prepare_data", refuse)
    monkeypatch.setattr(sweep, "run_sweep", refuse)
