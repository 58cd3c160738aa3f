"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

One pipeline, two front ends: :func:`run_experiment` loads MNIST (:func:`prepare_data`),
trains a teacher (:func:`train_teacher`), then a small student three times per seed
(:func:`train_students`) from identical initial weights and with the same data order: from
the labels (scratch), from labels with label smoothing (smoothed, the control for plain
regularisation) and distilled from the teacher. It returns a
:class:`kdlib.report.ExperimentResult`; settings are in :mod:`kdlib.experiment_config`, the
training of teacher and students in :mod:`kdlib.training` (its functions are importable from
here too).

The protocol: every model (the teacher too) keeps the weights of its best epoch on the
validation split, by one rule (:func:`stopping_callback`); the test set is used once, after
all training; the students are compared seed by seed (:func:`kdlib.stats.compare`: paired
differences, 95 % CI, paired t-test, McNemar's test per seed and pooled).

The students learn from cached soft targets: MNIST is not augmented here, so the teacher's
logits are the same every epoch and are computed once (:mod:`kdlib.soft_targets`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from kdlib import data, io, stats, validate
from kdlib.experiment_config import (
    COMPARISONS,
    MIN_COMPRESSION,
    STOPPING_MONITOR,
    STUDENT_ROLES,
    STUDENTS,
    TEACHERS,
    ExperimentConfig,
)
from kdlib.report import (
    INFERENCE_BATCH_SIZE,
    Artifacts,
    ExperimentResult,
    device_description,
    predict_classes,
    run_conditions,
    summarise,
)
from kdlib.training import (
    TrainedTwins,
    best_epoch,
    build_teacher,
    compression_ratio,
    stopping_callback,
    teacher_soft_targets,
    train_students,
    train_teacher,
    twin_students,
)

__all__ = [
    "COMPARISONS",
    "INFERENCE_BATCH_SIZE",
    "MIN_COMPRESSION",
    "STOPPING_MONITOR",
    "STUDENTS",
    "STUDENT_ROLES",
    "TEACHERS",
    "Artifacts",
    "ExperimentConfig",
    "ExperimentResult",
    "Splits",
    "TrainedTwins",
    "best_epoch",
    "build_teacher",
    "compression_ratio",
    "predict_classes",
    "prepare_data",
    "run_experiment",
    "stopping_callback",
    "teacher_soft_targets",
    "train_students",
    "train_teacher",
    "twin_students",
]


@dataclass(frozen=True)
class Splits:
    """MNIST scaled to [0, 1] (float32), with a validation split held out of training."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every array, by name (for printing)."""
        return {f.name: tuple(getattr(self, f.name).shape) for f in dataclasses.fields(self)}


def prepare_data(config: ExperimentConfig, path: str | os.PathLike[str] | None = None) -> Splits:
    """Load MNIST with :func:`kdlib.data.load_mnist`, scale it and split off validation.

    The validation images are a fixed random choice (seed 0) of the training set, so every
    seed of the experiment sees the same split. ``train_size`` and ``test_size`` take
    class-balanced subsets.
    """
    (x_train, y_train), (x_test, y_test) = data.load_mnist(path)
    if config.val_size >= len(x_train):
        raise ValueError(
            f"val_size={config.val_size} leaves no training images out of {len(x_train)}; "
            "use a smaller val_size (e.g. 5000)."
        )
    order = np.random.default_rng(0).permutation(len(x_train))
    val_idx, train_idx = order[: config.val_size], order[config.val_size :]
    x_val, y_val = x_train[val_idx], y_train[val_idx]
    x_train, y_train = x_train[train_idx], y_train[train_idx]
    if config.train_size is not None:
        x_train, y_train = data.balanced_subset(x_train, y_train, config.train_size, seed=0)
    if config.test_size is not None:
        x_test, y_test = data.balanced_subset(x_test, y_test, config.test_size, seed=0)
    return Splits(
        x_train=data.scale_images(x_train),
        y_train=y_train.astype("int32"),
        x_val=data.scale_images(x_val),
        y_val=y_val.astype("int32"),
        x_test=data.scale_images(x_test),
        y_test=y_test.astype("int32"),
    )


# ------------------------------------------------------------------------------ pipeline
@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "triggered tf.function retracing" warnings while the block runs.

    Every model gets its own predict function, so predicting with several models in a row
    looks like retracing to TensorFlow; the warning is noise here.
    """
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_experiment(
    config: ExperimentConfig | None = None,
    *,
    save_student: str | os.PathLike[str] | None = None,
    data_path: str | os.PathLike[str] | None = None,
) -> ExperimentResult:
    """Run the whole protocol: data, teacher, ``config.seeds`` sets of students, report.

    Parameters
    ----------
    config : ExperimentConfig, optional
        Defaults to :meth:`ExperimentConfig.default` (full, or fast with ``KDLIB_FAST=1``).
    save_student : path, optional
        Where to save the first seed's distilled student as a ``.keras`` file; it is a
        plain Keras model that ``keras.models.load_model`` loads without kdlib.
    data_path : path, optional
        An explicit ``mnist.npz`` for :func:`kdlib.data.load_mnist`.

    Returns
    -------
    ExperimentResult
        Teacher, scratch, smoothed and distilled reports (students: mean ± std over seeds,
        kept epochs per seed), the paired comparisons, the histories of the first seed,
        the run's conditions, and the trained models in ``artifacts``.
    """
    config = config or ExperimentConfig.default()
    if save_student is not None:
        validate.output_path(save_student, suffix=".keras", name="save_student")
    with _quiet_retracing_warnings():
        return _run_pipeline(config, save_student, data_path)


def _run_pipeline(
    config: ExperimentConfig,
    save_student: str | os.PathLike[str] | None,
    data_path: str | os.PathLike[str] | None,
) -> ExperimentResult:
    start = time.perf_counter()
    load_at_start = run_conditions().get("load_average_1min")
    splits = prepare_data(config, data_path)
    teacher, teacher_history = train_teacher(config, splits)
    train_targets, val_targets = teacher_soft_targets(teacher, splits)
    # Every model is trained, and its epoch chosen on validation, before the test set is
    # touched: it is used once, below.
    trained = [
        train_students(config, splits, teacher, seed, train_targets, val_targets)
        for seed in config.seed_list()
    ]
    first = trained[0]  # the first seed's models are kept for plots and saving
    if save_student is not None:
        with io.atomic_path(save_student) as temporary:  # never a half-written .keras
            first.distilled.save(temporary)

    teacher_predictions = predict_classes(teacher, splits.x_test)
    predictions = {
        name: [predict_classes(t.models()[name], splits.x_test) for t in trained]
        for name in STUDENT_ROLES
    }
    correct = {name: [p == splits.y_test for p in predictions[name]] for name in STUDENT_ROLES}
    comparisons = {
        f"{b}_vs_{a}": stats.compare(a, correct[a], b, correct[b]) for a, b in COMPARISONS
    }
    conditions = run_conditions()
    conditions["load_average_1min"] = {
        "start": load_at_start,
        "before_timing": conditions.get("load_average_1min"),
    }

    def measure(name: str, model: keras.Model, histories: list[dict[str, list[float]]]) -> Any:
        per_seed = [teacher_predictions] if name == "teacher" else predictions[name]
        return summarise(
            name,
            model,
            per_seed,
            splits.y_test,
            teacher_predictions,
            splits.x_test,
            best_epochs=[best_epoch(h) for h in histories],
            epochs_run=[len(h["loss"]) for h in histories],
        )

    reports = {"teacher": measure("teacher", teacher, [teacher_history])}
    for name in STUDENT_ROLES:
        reports[name] = measure(name, first.models()[name], [t.histories[name] for t in trained])
    conditions["load_average_1min"]["end"] = run_conditions().get("load_average_1min")
    return ExperimentResult(
        config=config,
        num_test=len(splits.y_test),
        seconds=time.perf_counter() - start,
        device=device_description(),
        histories={"teacher": teacher_history, **first.histories},
        artifacts=Artifacts(
            teacher=teacher,
            scratch=first.scratch,
            distilled=first.distilled,
            splits=splits,
            smoothed=first.smoothed,
            predictions={"teacher": [teacher_predictions], **predictions},
        ),
        comparisons=comparisons,
        conditions=conditions,
        **reports,
    )
