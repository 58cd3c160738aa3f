"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

One pipeline, two front ends: :func:`run_experiment` loads MNIST (:func:`prepare_data`),
trains a teacher (:func:`train_teacher`), then a small student twice
(:func:`train_students`), once from scratch and once distilled from the teacher, from
identical initial weights and with the same data order. It returns a
:class:`kdlib.report.ExperimentResult`; settings are in :mod:`kdlib.experiment_config`.

The students learn from cached soft targets: MNIST is not augmented here, so the teacher's
logits are the same every epoch and are computed once (:mod:`kdlib.soft_targets`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from kdlib import data, validate
from kdlib.distiller import Distiller
from kdlib.experiment_config import MIN_COMPRESSION, STUDENTS, TEACHERS, ExperimentConfig
from kdlib.report import (
    INFERENCE_BATCH_SIZE,
    Artifacts,
    ExperimentResult,
    device_description,
    predict_classes,
    summarise,
)
from kdlib.soft_targets import cache_soft_targets


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


# -------------------------------------------------------------------------------- models
def build_teacher(name: str, seed: int = 0) -> keras.Model:
    """A fresh, uncompiled teacher (logits out), initialised with ``seed``."""
    validate.one_of(name, TEACHERS, "teacher")
    keras.utils.set_random_seed(seed)
    return TEACHERS[name]()


def twin_students(name: str, seed: int) -> tuple[keras.Model, keras.Model]:
    """Two uncompiled copies of one student with identical initial weights.

    The first is trained from scratch, the second distilled, so any difference between
    them after training comes from the loss alone.
    """
    validate.one_of(name, STUDENTS, "student")
    keras.utils.set_random_seed(seed)
    scratch = STUDENTS[name]()
    distilled = keras.models.clone_model(scratch)
    distilled.set_weights(scratch.get_weights())
    return scratch, distilled


def check_compression(teacher: keras.Model, student: keras.Model) -> float:
    """Return teacher/student parameters; raise if the student is not >= 10x smaller."""
    ratio = teacher.count_params() / student.count_params()
    if ratio < MIN_COMPRESSION:
        raise ValueError(
            f"the student has {student.count_params():,} parameters, only {ratio:.1f}x fewer "
            f"than the teacher's {teacher.count_params():,}; distillation here needs at least "
            f"{MIN_COMPRESSION:.0f}x fewer: choose a smaller student or a larger teacher."
        )
    return ratio


# ------------------------------------------------------------------------------ training
def train_teacher(
    config: ExperimentConfig, splits: Splits
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train the teacher on the labels; return it and its ``History.history``."""
    teacher = build_teacher(config.teacher, config.seed)
    # The learning rate decays to 0 over the run (cosine), so the last epoch lands on a good
    # point instead of wherever the constant-rate noise left it.
    steps = config.teacher_epochs * math.ceil(len(splits.x_train) / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    history = _fit_on_labels(
        teacher,
        keras.optimizers.Adam(schedule),
        config,
        splits,
        config.teacher_epochs,
        config.seed,
    )
    return teacher, history


def _fit_on_labels(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    config: ExperimentConfig,
    splits: Splits,
    epochs: int,
    seed: int,
) -> dict[str, list[float]]:
    """Train ``model`` on the hard labels alone, the global seed reset to ``seed`` first
    (a reproducible batch order); return ``History.history``."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    history = model.fit(
        splits.x_train,
        splits.y_train,
        batch_size=config.batch_size,
        epochs=epochs,
        validation_data=(splits.x_val, splits.y_val),
        verbose=config.verbose,
    )
    return history.history


def _cached_targets(teacher: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The teacher's logits for ``x``, computed once, with the labels (cached mode)."""
    return cache_soft_targets(teacher, x, y, batch_size=INFERENCE_BATCH_SIZE, verbose=0)


@dataclass
class TrainedTwins:
    """The two students of one seed after :func:`train_students`, and their histories."""

    seed: int
    scratch: keras.Model
    distilled: keras.Model
    histories: dict[str, dict[str, list[float]]]


def train_students(
    config: ExperimentConfig,
    splits: Splits,
    teacher: keras.Model,
    seed: int,
    train_targets: dict[str, np.ndarray] | None = None,
    val_targets: dict[str, np.ndarray] | None = None,
) -> TrainedTwins:
    """Train one student from scratch and its twin by distillation, for the same epochs.

    Both start from the same weights (:func:`twin_students`) and see the images in the same
    order (the global seed is reset to ``seed`` before each ``fit``). ``train_targets`` and
    ``val_targets`` are cached soft targets, computed here if not given.
    """
    if train_targets is None:
        train_targets = _cached_targets(teacher, splits.x_train, splits.y_train)
    if val_targets is None:
        val_targets = _cached_targets(teacher, splits.x_val, splits.y_val)
    scratch, distilled = twin_students(config.student, seed)
    check_compression(teacher, scratch)

    scratch_history = _fit_on_labels(
        scratch,
        keras.optimizers.Adam(config.learning_rate),
        config,
        splits,
        config.epochs,
        seed,
    )

    distiller = Distiller(teacher=teacher, student=distilled)
    distiller.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        metrics=["accuracy"],
        alpha=config.alpha,
        temperature=config.temperature,
    )
    keras.utils.set_random_seed(seed)
    distilled_history = distiller.fit(
        splits.x_train,
        train_targets,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(splits.x_val, val_targets),
        verbose=config.verbose,
    )
    return TrainedTwins(
        seed=seed,
        scratch=scratch,
        distilled=distilled,
        histories={"scratch": scratch_history, "distilled": distilled_history.history},
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
    """Run the whole experiment: data, teacher, ``config.seeds`` pairs of students, report.

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
        Teacher, scratch and distilled reports (students: mean ± std over seeds), the
        histories of the first seed, and the trained models in ``artifacts``.
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
    splits = prepare_data(config, data_path)
    teacher, teacher_history = train_teacher(config, splits)
    train_targets = _cached_targets(teacher, splits.x_train, splits.y_train)
    val_targets = _cached_targets(teacher, splits.x_val, splits.y_val)
    teacher_predictions = predict_classes(teacher, splits.x_test)

    first: TrainedTwins | None = None
    predictions: dict[str, list[np.ndarray]] = {"scratch": [], "distilled": []}
    for seed in config.seed_list():
        twins = train_students(config, splits, teacher, seed, train_targets, val_targets)
        predictions["scratch"].append(predict_classes(twins.scratch, splits.x_test))
        predictions["distilled"].append(predict_classes(twins.distilled, splits.x_test))
        first = first or twins  # the first seed's models are kept for plots and saving
    assert first is not None  # config.seeds >= 1
    if save_student is not None:
        first.distilled.save(save_student)

    def measure(name: str, model: keras.Model, per_seed: list[np.ndarray]) -> Any:
        return summarise(name, model, per_seed, splits.y_test, teacher_predictions, splits.x_test)

    return ExperimentResult(
        config=config,
        teacher=measure("teacher", teacher, [teacher_predictions]),
        scratch=measure("scratch", first.scratch, predictions["scratch"]),
        distilled=measure("distilled", first.distilled, predictions["distilled"]),
        num_test=len(splits.y_test),
        seconds=time.perf_counter() - start,
        device=device_description(),
        histories={"teacher": teacher_history, **first.histories},
        artifacts=Artifacts(
            teacher=teacher, scratch=first.scratch, distilled=first.distilled, splits=splits
        ),
    )
