"""Training of the MNIST distillation experiment's models (:mod:`kdlib.experiment`).

The teacher (:func:`train_teacher`) and, per seed, three twin students from identical
initial weights and with the same data order (:func:`train_students`): from the labels
(scratch), from labels with label smoothing (smoothed) and distilled from the teacher's
cached soft targets (:func:`teacher_soft_targets`). Every model follows one stopping rule
(:func:`stopping_callback`) and keeps the weights of its best validation epoch
(:func:`best_epoch`). Settings are in :mod:`kdlib.experiment.config`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from kdlib import validate
from kdlib.distiller import Distiller
from kdlib.experiment.config import (
    MIN_COMPRESSION,
    STOPPING_MONITOR,
    STUDENT_ROLES,
    STUDENTS,
    TEACHERS,
    ExperimentConfig,
)
from kdlib.experiment.report import INFERENCE_BATCH_SIZE
from kdlib.soft_targets import cache_soft_targets

if TYPE_CHECKING:
    from kdlib.experiment.splits import Splits

__all__ = [
    "build_teacher",
    "twin_students",
    "compression_ratio",
    "stopping_callback",
    "best_epoch",
    "train_teacher",
    "teacher_soft_targets",
    "TrainedTwins",
    "train_students",
]


# -------------------------------------------------------------------------------- models
def build_teacher(name: str, seed: int = 0) -> keras.Model:
    """A fresh, uncompiled teacher (logits out), initialised with ``seed``."""
    validate.one_of(name, TEACHERS, "teacher")
    keras.utils.set_random_seed(seed)
    return TEACHERS[name]()


def twin_students(name: str, seed: int, copies: int = 2) -> tuple[keras.Model, ...]:
    """``copies`` uncompiled copies of one student with identical initial weights.

    The experiment trains one from scratch, one with label smoothing and one by
    distillation, so any difference between them after training comes from the loss alone.
    """
    validate.one_of(name, STUDENTS, "student")
    copies = validate.positive_int(copies, "copies")
    keras.utils.set_random_seed(seed)
    first = STUDENTS[name]()
    twins = [first]
    for _ in range(copies - 1):
        twin = keras.models.clone_model(first)
        twin.set_weights(first.get_weights())
        twins.append(twin)
    return tuple(twins)


def compression_ratio(teacher: keras.Model, student: keras.Model) -> float:
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
def stopping_callback(patience: int) -> keras.callbacks.EarlyStopping:
    """The stopping rule every model of the experiment follows.

    Training stops after ``patience`` epochs without a higher validation accuracy, and the
    weights of the best epoch (the earliest, on ties) are restored, so each model is judged
    at its own best epoch, chosen on the validation split and never on the test set.
    """
    return keras.callbacks.EarlyStopping(
        monitor=STOPPING_MONITOR, mode="max", patience=patience, restore_best_weights=True
    )


def best_epoch(history: dict[str, list[float]]) -> int:
    """The epoch (1-based) whose weights :func:`stopping_callback` keeps: the first one with
    the highest validation accuracy in ``history`` (a Keras ``History.history``)."""
    return int(np.argmax(history[STOPPING_MONITOR])) + 1


def _keras_verbose(config: ExperimentConfig) -> int | str:
    return 0 if config.verbose == "summary" else config.verbose


def _summary_line(
    config: ExperimentConfig,
    name: str,
    seed: int,
    history: dict[str, list[float]],
    seconds: float,
    budget: int,
) -> None:
    """Print one line per trained model (unless ``verbose`` is 0)."""
    if config.verbose == 0:
        return
    chosen = best_epoch(history)
    print(
        f"seed {seed}  {name:<9}  kept epoch {chosen:>2} of {len(history['loss']):>2} run "
        f"(budget {budget}), validation accuracy "
        f"{100 * history[STOPPING_MONITOR][chosen - 1]:.2f} %, {seconds:.0f} s",
        flush=True,
    )


def train_teacher(
    config: ExperimentConfig, splits: Splits
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train the teacher on the labels; return it and its ``History.history``.

    It follows the students' stopping rule (:func:`stopping_callback`): the model returned
    has the weights of its best validation epoch (:func:`best_epoch` of the history).
    """
    teacher = build_teacher(config.teacher, config.seed)
    # The learning rate decays to 0 over the epoch budget (cosine), so the last epochs are
    # not left wherever the constant-rate noise put them.
    steps = config.teacher_epochs * math.ceil(len(splits.x_train) / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    start = time.perf_counter()
    history = _fit_on_labels(
        teacher,
        keras.optimizers.Adam(schedule),
        config,
        splits,
        config.teacher_epochs,
        config.seed,
    )
    elapsed = time.perf_counter() - start
    _summary_line(config, "teacher", config.seed, history, elapsed, config.teacher_epochs)
    return teacher, history


def _fit_on_labels(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    config: ExperimentConfig,
    splits: Splits,
    epochs: int,
    seed: int,
    label_smoothing: float | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` on the labels (cross-entropy) under the stopping rule, the global
    seed reset to ``seed`` first (a reproducible batch order); return ``History.history``.

    With ``label_smoothing`` (even 0.0) the labels are one-hot and smoothed by that amount;
    the images and their order are the same as without.
    """
    y_train, y_val = splits.y_train, splits.y_val
    if label_smoothing is None:
        loss: keras.losses.Loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
        classes = int(model.output.shape[-1])
        y_train = np.eye(classes, dtype="float32")[y_train]
        y_val = np.eye(classes, dtype="float32")[y_val]
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    history = model.fit(
        splits.x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=epochs,
        validation_data=(splits.x_val, y_val),
        callbacks=[stopping_callback(config.patience)],
        verbose=_keras_verbose(config),
    )
    return history.history


def _cached_targets(teacher: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The teacher's logits for ``x``, computed once, with the labels (cached mode)."""
    return cache_soft_targets(teacher, x, y, batch_size=INFERENCE_BATCH_SIZE, verbose=0)


def teacher_soft_targets(
    teacher: keras.Model, splits: Splits
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cached soft targets of the training and of the validation split, in that order.

    Each is what :func:`kdlib.soft_targets.cache_soft_targets` returns (the teacher's
    logits, computed once, with the labels): pass them to ``Distiller.fit`` as targets.
    """
    return (
        _cached_targets(teacher, splits.x_train, splits.y_train),
        _cached_targets(teacher, splits.x_val, splits.y_val),
    )


@dataclass
class TrainedTwins:
    """The students of one seed after :func:`train_students`, and their histories.

    ``scratch`` learned from the labels, ``distilled`` from the teacher and the labels,
    ``smoothed`` (when trained) from labels with label smoothing.
    """

    seed: int
    scratch: keras.Model
    distilled: keras.Model
    histories: dict[str, dict[str, list[float]]]
    smoothed: keras.Model | None = None

    def models(self) -> dict[str, keras.Model]:
        """The trained students by name, in :data:`STUDENT_ROLES` order."""
        found = {"scratch": self.scratch, "smoothed": self.smoothed, "distilled": self.distilled}
        return {name: found[name] for name in STUDENT_ROLES if found[name] is not None}


def train_students(
    config: ExperimentConfig,
    splits: Splits,
    teacher: keras.Model,
    seed: int,
    train_targets: dict[str, np.ndarray] | None = None,
    val_targets: dict[str, np.ndarray] | None = None,
    smoothed: bool = True,
) -> TrainedTwins:
    """Train one student from scratch, a twin with label smoothing (unless ``smoothed`` is
    False) and a twin by distillation.

    All start from the same weights (:func:`twin_students`), see the images in the same
    order (the global seed is reset to ``seed`` before each ``fit``) and follow the same
    stopping rule (:func:`stopping_callback`, at most ``config.epochs`` epochs).
    ``train_targets`` and ``val_targets`` are cached soft targets
    (:func:`teacher_soft_targets`), computed here if not given.
    """
    if train_targets is None or val_targets is None:
        train_targets, val_targets = teacher_soft_targets(teacher, splits)
    scratch, smooth, distilled = twin_students(config.student, seed, copies=3)
    compression_ratio(teacher, scratch)
    histories: dict[str, dict[str, list[float]]] = {}

    def timed(name: str, train: Callable[[], dict[str, list[float]]]) -> None:
        start = time.perf_counter()
        histories[name] = train()
        elapsed = time.perf_counter() - start
        _summary_line(config, name, seed, histories[name], elapsed, config.epochs)

    def adam() -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(config.learning_rate)

    timed("scratch", lambda: _fit_on_labels(scratch, adam(), config, splits, config.epochs, seed))
    if smoothed:
        timed(
            "smoothed",
            lambda: _fit_on_labels(
                smooth, adam(), config, splits, config.epochs, seed, config.label_smoothing
            ),
        )

    distiller = Distiller(teacher=teacher, student=distilled)
    distiller.compile(
        optimizer=adam(), metrics=["accuracy"], alpha=config.alpha, temperature=config.temperature
    )

    def distill() -> dict[str, list[float]]:
        keras.utils.set_random_seed(seed)
        return distiller.fit(
            splits.x_train,
            train_targets,
            batch_size=config.batch_size,
            epochs=config.epochs,
            validation_data=(splits.x_val, val_targets),
            callbacks=[stopping_callback(config.patience)],
            verbose=_keras_verbose(config),
        ).history

    timed("distilled", distill)
    return TrainedTwins(
        seed=seed,
        scratch=scratch,
        distilled=distilled,
        smoothed=smooth if smoothed else None,
        histories=histories,
    )
