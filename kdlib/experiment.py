"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

One pipeline, two front ends: :func:`run_experiment` loads MNIST, trains a teacher, then
trains a small student three times per seed, from identical initial weights and with the
same data order: from the labels (scratch), from labels with label smoothing (smoothed, the
control for plain regularisation) and distilled from the teacher. It returns an
:class:`ExperimentResult` that both front ends format (:func:`format_table`,
:meth:`ExperimentResult.to_json_dict`).

The protocol: every model (teacher included) keeps the weights of its best epoch on the
validation split (highest validation accuracy, the same patience for all, see
:func:`stopping_callback`); the test set is used once, after all training; the students are
compared seed by seed with :func:`kdlib.stats.compare` (paired differences, 95 % CI, paired
t-test, McNemar's test per seed and pooled).

The students learn from cached soft targets: MNIST is not augmented here, so the teacher's
logits are the same every epoch and are computed once (:mod:`kdlib.soft_targets`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kdlib import config as kdconfig
from kdlib import data, models, stats
from kdlib.distiller import Distiller, check_alpha
from kdlib.losses import check_temperature
from kdlib.soft_targets import cache_soft_targets

#: Teacher architectures, by the name ``--teacher`` takes.
TEACHERS: dict[str, Callable[[], keras.Model]] = {
    # About 420k parameters; reaches >= 99.0 % test accuracy in a few epochs.
    "cnn": lambda: models.cnn(filters=(32, 64), dense=128, dropout=0.25, name="teacher_cnn"),
    # Hinton et al.'s large MLP teacher (1200-1200, dropout): about 2.4M parameters.
    "mlp": lambda: models.mlp(hidden=(1200, 1200), dropout=0.3, name="teacher_mlp"),
}

#: Student architectures, by the name ``--student`` takes; each has >= 10x fewer
#: parameters than either teacher.
STUDENTS: dict[str, Callable[[], keras.Model]] = {
    # One hidden layer of 50 units: 39,760 parameters, 10.6x fewer than the CNN teacher.
    "mlp": lambda: models.mlp(hidden=(50,), name="student_mlp"),
    # Two small conv layers (8, 16 filters) and 32 dense units: about 27k parameters.
    "cnn": lambda: models.cnn(filters=(8, 16), dense=32, dropout=0.0, name="student_cnn"),
}

#: The smallest teacher/student parameter ratio the experiment accepts.
MIN_COMPRESSION = 10.0

VERBOSE_VALUES = ("summary", "auto", 0, 1, 2)

#: The students trained per seed, in table order, and the pairs compared (a, b: b - a).
STUDENT_ROLES = ("scratch", "smoothed", "distilled")
COMPARISONS = (("scratch", "distilled"), ("smoothed", "distilled"), ("scratch", "smoothed"))

#: What every model's epoch is chosen by (same rule for all; ties go to the earlier epoch).
STOPPING_MONITOR = "val_accuracy"

#: Batch size of every inference pass (soft targets, predictions, timing). One size for all,
#: dividing every split evenly, so each model's predict function is traced once.
INFERENCE_BATCH_SIZE = 1000


def _check_name(name: Any, choices: dict[str, Any], role: str) -> str:
    if name not in choices:
        raise ValueError(
            f"{role} must be one of {sorted(choices)}, got {name!r}; e.g. {role}="
            f"{next(iter(choices))!r}."
        )
    return name


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}=3.")
    return int(value)


#: The settings that differ between the full run and the fast one (``KDLIB_FAST=1``);
#: everything else is the same in both.
FULL_SETTINGS: dict[str, Any] = {
    "epochs": 40,
    "teacher_epochs": 8,
    "seeds": 5,
    "train_size": None,
    "val_size": 5000,
    "test_size": None,
}
FAST_SETTINGS: dict[str, Any] = {
    "epochs": 3,
    "teacher_epochs": 2,
    "seeds": 2,
    "train_size": 5000,
    "val_size": 1000,
    "test_size": 2000,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of the experiment; validated when created.

    Use :meth:`default` to get the full or the fast (``KDLIB_FAST=1``) configuration,
    overriding any field: ``ExperimentConfig.default(temperature=4.0)``.

    Attributes
    ----------
    teacher, student : str
        Keys of :data:`TEACHERS` and :data:`STUDENTS`.
    temperature : float
        T > 0 that softens the teacher's and the student's logits in the distillation loss.
    alpha : float
        Weight in [0, 1] of the hard-label loss; the soft loss gets ``1 - alpha``.
    label_smoothing : float
        Label smoothing in [0, 1) of the control student ("smoothed"): its targets are
        ``(1 - label_smoothing) * one_hot + label_smoothing / 10``.
    epochs, teacher_epochs : int
        The most epochs each student (all alike) and the teacher may train; each model keeps
        the weights of its best validation epoch (see ``patience``).
    patience : int
        Training stops after this many epochs without a new best validation accuracy; the
        same for every model.
    batch_size : int
        Mini-batch size for all training and inference.
    seeds, seed : int
        The students are trained ``seeds`` times with seeds ``seed, seed + 1, ...``; the
        teacher is trained once, with ``seed``.
    train_size : int or None
        Training images after the validation split is held out (a class-balanced subset);
        None uses all of them.
    val_size : int
        Images held out of the training set for validation.
    test_size : int or None
        Test images (a class-balanced subset); None uses all 10,000.
    learning_rate : float
        Adam's learning rate: constant for the two students, the start of a cosine decay
        to 0 for the teacher.
    verbose : {"summary", "auto", 0, 1, 2}
        "summary": one line per trained model; "auto"/1 and 2 add Keras' progress bars or
        one line per epoch; 0 is silent.
    """

    teacher: str = "cnn"
    student: str = "mlp"
    temperature: float = 4.0
    alpha: float = 0.3
    label_smoothing: float = 0.1
    epochs: int = 40
    teacher_epochs: int = 8
    patience: int = 5
    batch_size: int = 128
    seeds: int = 5
    seed: int = 0
    train_size: int | None = None
    val_size: int = 5000
    test_size: int | None = None
    learning_rate: float = 1e-3
    verbose: int | str = "auto"

    def __post_init__(self) -> None:
        _check_name(self.teacher, TEACHERS, "teacher")
        _check_name(self.student, STUDENTS, "student")
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        for name in ("epochs", "teacher_epochs", "patience", "batch_size", "seeds", "val_size"):
            _check_positive_int(getattr(self, name), name)
        for name in ("train_size", "test_size"):
            _check_positive_int(getattr(self, name), name, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or (
            self.seed < 0
        ):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}; e.g. seed=0.")
        smoothing = self.label_smoothing
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not (
            0.0 <= smoothing < 1.0
        ):
            raise ValueError(
                f"label_smoothing must be a number in [0, 1), got {smoothing!r}; e.g. 0.1."
            )
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and lr > 0
        ):
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {lr!r}; e.g. 1e-3."
            )
        if self.verbose not in VERBOSE_VALUES:
            raise ValueError(
                f"verbose must be one of {VERBOSE_VALUES}, got {self.verbose!r}; "
                "use 'summary' for one line per model, 'auto' for progress bars or 0 for "
                "silence."
            )

    @classmethod
    def default(cls, **overrides: Any) -> ExperimentConfig:
        """The full configuration, or the fast one when ``KDLIB_FAST=1``, plus ``overrides``.

        Full: all 55,000 training images (5,000 held out), teacher at most 8 epochs,
        students at most 40, 5 seeds. Fast: 5,000 training, 1,000 validation and 2,000 test
        images, teacher 2 epochs, students 3, 2 seeds. Only sizes, epochs and seeds differ;
        the code path is the same.
        """
        settings: dict[str, Any] = dict(kdconfig.pick(full=FULL_SETTINGS, fast=FAST_SETTINGS))
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(
                f"unknown setting(s) {sorted(unknown)}; the settings are "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            )
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def seed_list(self) -> list[int]:
        """The seeds the students are trained with."""
        return [self.seed + i for i in range(self.seeds)]


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


@dataclass(frozen=True)
class ModelReport:
    """What the experiment measured for one model (students: mean over seeds).

    Attributes
    ----------
    params : int
        Number of weights.
    size_bytes : int
        Size of the model saved as ``.keras`` without optimizer state.
    test_accuracy, test_accuracy_std : float
        Mean and sample standard deviation (ddof=1; 0 for one seed) over seeds.
    test_errors : int
        Misclassified test images, mean over seeds rounded.
    agreement : float
        Fraction of test images on which the model predicts the teacher's class.
    ms_per_1000 : float
        Inference time for 1,000 images on this machine (median of repeats, first seed).
    test_accuracies : tuple of float
        Test accuracy for each seed.
    test_errors_per_seed : tuple of int
        Misclassified test images for each seed.
    best_epochs : tuple of int
        The epoch (1-based) whose weights were kept, for each seed: the best validation
        accuracy.
    epochs_run : tuple of int
        Epochs trained for each seed before the stopping rule ended training.
    """

    name: str
    params: int
    size_bytes: int
    test_accuracy: float
    test_accuracy_std: float
    test_errors: int
    agreement: float
    ms_per_1000: float
    test_accuracies: tuple[float, ...]
    test_errors_per_seed: tuple[int, ...] = ()
    best_epochs: tuple[int, ...] = ()
    epochs_run: tuple[int, ...] = ()


@dataclass
class Artifacts:
    """The trained models (first seed), test data and every seed's test predictions.

    For plots and further analysis; not part of the report. ``predictions`` maps each model
    name to one vector of predicted test classes per seed (the teacher: one vector).
    """

    teacher: keras.Model
    scratch: keras.Model
    distilled: keras.Model
    splits: Splits
    smoothed: keras.Model | None = None
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    """The outcome of :func:`run_experiment`.

    ``histories`` holds the Keras ``History.history`` dicts of the teacher and of the first
    seed's students, by the names ``"teacher"``, ``"scratch"``, ``"smoothed"``,
    ``"distilled"``. ``comparisons`` holds the paired statistics of the students
    (:data:`COMPARISONS`), by names such as ``"distilled_vs_scratch"``. ``conditions``
    records where the run happened (devices, CPU load, library versions).
    """

    config: ExperimentConfig
    teacher: ModelReport
    scratch: ModelReport
    distilled: ModelReport
    num_test: int
    seconds: float
    device: str
    histories: dict[str, dict[str, list[float]]]
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)
    smoothed: ModelReport | None = None
    comparisons: dict[str, stats.PairedComparison] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        """Distilled minus scratch mean test accuracy (a fraction, not points)."""
        return self.distilled.test_accuracy - self.scratch.test_accuracy

    def students(self) -> list[ModelReport]:
        """The student reports in table order (scratch, smoothed, distilled)."""
        return [r for r in (self.scratch, self.smoothed, self.distilled) if r is not None]

    def to_json_dict(self) -> dict[str, Any]:
        """The report in the schema of ``kdlib distill --json`` (README, ``kdlib distill``)."""

        def student(report: ModelReport) -> dict[str, Any]:
            return {
                "params": int(report.params),
                "test_accuracy": float(report.test_accuracy),
                "test_accuracy_std": float(report.test_accuracy_std),
                "test_errors": int(report.test_errors),
                "test_accuracies": [float(a) for a in report.test_accuracies],
                "test_errors_per_seed": [int(e) for e in report.test_errors_per_seed],
                "best_epochs": [int(e) for e in report.best_epochs],
                "epochs_run": [int(e) for e in report.epochs_run],
                "agreement": float(report.agreement),
                "size_bytes": int(report.size_bytes),
                "ms_per_1000": float(report.ms_per_1000),
            }

        config = self.config
        report: dict[str, Any] = {
            "teacher": {
                "params": int(self.teacher.params),
                "test_accuracy": float(self.teacher.test_accuracy),
                "test_errors": int(self.teacher.test_errors),
                "best_epoch": int(self.teacher.best_epochs[0]) if self.teacher.best_epochs
                else None,
                "epochs_run": int(self.teacher.epochs_run[0]) if self.teacher.epochs_run
                else None,
                "size_bytes": int(self.teacher.size_bytes),
                "ms_per_1000": float(self.teacher.ms_per_1000),
            },
            "scratch": student(self.scratch),
            "distilled": student(self.distilled),
            "temperature": float(config.temperature),
            "alpha": float(config.alpha),
            "seeds": int(config.seeds),
            "seconds": float(self.seconds),
        }
        if self.smoothed is not None:
            report["smoothed"] = student(self.smoothed)
        report.update(
            {
                "label_smoothing": float(config.label_smoothing),
                "seed_list": config.seed_list(),
                "test_images": int(self.num_test),
                "stopping": {
                    "monitor": STOPPING_MONITOR,
                    "patience": int(config.patience),
                    "max_epochs": int(config.epochs),
                    "teacher_max_epochs": int(config.teacher_epochs),
                    "restore_best_weights": True,
                },
                "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()},
                "conditions": dict(self.conditions),
            }
        )
        return report


# ---------------------------------------------------------------------------------- data
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
    _check_name(name, TEACHERS, "teacher")
    keras.utils.set_random_seed(seed)
    return TEACHERS[name]()


def twin_students(name: str, seed: int, copies: int = 2) -> tuple[keras.Model, ...]:
    """``copies`` uncompiled copies of one student with identical initial weights.

    The experiment trains one from scratch, one with label smoothing and one by
    distillation, so any difference between them after training comes from the loss alone.
    """
    _check_name(name, STUDENTS, "student")
    _check_positive_int(copies, "copies")
    keras.utils.set_random_seed(seed)
    first = STUDENTS[name]()
    twins = [first]
    for _ in range(copies - 1):
        twin = keras.models.clone_model(first)
        twin.set_weights(first.get_weights())
        twins.append(twin)
    return tuple(twins)


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
    config: ExperimentConfig, name: str, seed: int, history: dict[str, list[float]],
    seconds: float, budget: int,
) -> None:
    """One line per trained model (``verbose`` other than 0)."""
    if config.verbose == 0:
        return
    chosen = best_epoch(history)
    print(
        f"seed {seed}  {name:<9}  best epoch {chosen:>2} of {len(history['loss']):>2} run "
        f"(max {budget}), validation accuracy {100 * history[STOPPING_MONITOR][chosen - 1]:.2f} "
        f"%, {seconds:.0f} s",
        flush=True,
    )


def train_teacher(
    config: ExperimentConfig, splits: Splits
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train the teacher on the labels; return it and its ``History.history``.

    It follows the same stopping rule as the students (:func:`stopping_callback`): the
    returned model has the weights of its best validation epoch (:func:`best_epoch`).
    """
    teacher = build_teacher(config.teacher, config.seed)
    # The learning rate decays to 0 over the run (cosine), so the last epochs are not left
    # wherever the constant-rate noise put them.
    steps = config.teacher_epochs * math.ceil(len(splits.x_train) / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    start = time.perf_counter()
    history = _fit_on_labels(
        teacher, keras.optimizers.Adam(schedule), config, splits, config.teacher_epochs,
        config.seed,
    )
    _summary_line(config, "teacher", config.seed, history, time.perf_counter() - start,
                  config.teacher_epochs)
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
    seed reset to ``seed`` first so that the batch order is reproducible; return
    ``History.history``.

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
        classes = int(max(y_train.max(), y_val.max())) + 1
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
    """Cached soft targets of the training and the validation split (in that order).

    Each is what :func:`kdlib.soft_targets.cache_soft_targets` returns: the teacher's
    logits, computed once, with the labels; pass them to ``Distiller.fit`` as targets.
    """
    return (
        _cached_targets(teacher, splits.x_train, splits.y_train),
        _cached_targets(teacher, splits.x_val, splits.y_val),
    )


@dataclass
class StudentPair:
    """The students of one seed, trained, and their histories.

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
        found = {"scratch": self.scratch, "smoothed": self.smoothed,
                 "distilled": self.distilled}
        return {name: found[name] for name in STUDENT_ROLES if found[name] is not None}


def train_students(
    config: ExperimentConfig,
    splits: Splits,
    teacher: keras.Model,
    seed: int,
    train_targets: dict[str, np.ndarray] | None = None,
    val_targets: dict[str, np.ndarray] | None = None,
    smoothed: bool = True,
) -> StudentPair:
    """Train one student from scratch, a twin with label smoothing and a twin by
    distillation (``smoothed=False`` skips the second).

    All start from the same initial weights (:func:`twin_students`), see the training
    images in the same order (the global seed is reset to ``seed`` before each ``fit``, so
    the shuffles are the same) and follow the same stopping rule
    (:func:`stopping_callback`, at most ``config.epochs`` epochs). ``train_targets`` /
    ``val_targets`` are cached soft targets (computed here if not given).
    """
    if train_targets is None or val_targets is None:
        train_targets, val_targets = teacher_soft_targets(teacher, splits)
    scratch, smooth, distilled = twin_students(config.student, seed, copies=3)
    check_compression(teacher, scratch)
    histories = {}

    def timed(name: str, train: Callable[[], dict[str, list[float]]]) -> None:
        start = time.perf_counter()
        histories[name] = train()
        _summary_line(config, name, seed, histories[name], time.perf_counter() - start,
                      config.epochs)

    timed("scratch", lambda: _fit_on_labels(
        scratch, keras.optimizers.Adam(config.learning_rate), config, splits, config.epochs,
        seed,
    ))
    if smoothed:
        timed("smoothed", lambda: _fit_on_labels(
            smooth, keras.optimizers.Adam(config.learning_rate), config, splits,
            config.epochs, seed, label_smoothing=config.label_smoothing,
        ))

    distiller = Distiller(teacher=teacher, student=distilled)
    distiller.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        metrics=["accuracy"],
        alpha=config.alpha,
        temperature=config.temperature,
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
    return StudentPair(
        seed=seed,
        scratch=scratch,
        distilled=distilled,
        smoothed=smooth if smoothed else None,
        histories=histories,
    )


# ---------------------------------------------------------------------------- measuring
def predict_classes(
    model: keras.Model, x: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE
) -> np.ndarray:
    """The class each image is assigned (argmax of the logits)."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)


def saved_size_bytes(model: keras.Model) -> int:
    """Bytes of the model saved as ``.keras``, architecture and weights only.

    A copy is saved so that a compiled model's optimizer state is not counted: what you
    would ship is the model, not its training state.
    """
    # From get_config(), which holds no compile state (clone_model and model_from_json
    # recompile the copy, and the optimizer's variables would then be saved too).
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{model.name}.keras"
        copy.save(path)
        return path.stat().st_size


def inference_ms_per_1000(
    model: keras.Model, x: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE, repeats: int = 3
) -> float:
    """Milliseconds to predict 1,000 images: median of ``repeats`` passes over ``x``.

    One warm-up pass first, so tracing and compilation are not counted.
    """
    model.predict(x, batch_size=batch_size, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) * 1000.0 / len(x)


def _std(values: list[float]) -> float:
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


def _report(
    name: str,
    model: keras.Model,
    predictions: list[np.ndarray],
    y_test: np.ndarray,
    teacher_predictions: np.ndarray,
    x_test: np.ndarray,
    histories: list[dict[str, list[float]]],
) -> ModelReport:
    """Summarise one model over seeds (one entry of ``predictions``/``histories`` per seed)."""
    accuracies = [float(np.mean(p == y_test)) for p in predictions]
    errors = [int(np.sum(p != y_test)) for p in predictions]
    agreements = [float(np.mean(p == teacher_predictions)) for p in predictions]
    return ModelReport(
        name=name,
        params=int(model.count_params()),
        size_bytes=saved_size_bytes(model),
        test_accuracy=float(np.mean(accuracies)),
        test_accuracy_std=_std(accuracies),
        test_errors=int(round(float(np.mean(errors)))),
        agreement=float(np.mean(agreements)),
        ms_per_1000=inference_ms_per_1000(model, x_test),
        test_accuracies=tuple(accuracies),
        test_errors_per_seed=tuple(errors),
        best_epochs=tuple(best_epoch(h) for h in histories),
        epochs_run=tuple(len(h["loss"]) for h in histories),
    )


def run_conditions() -> dict[str, Any]:
    """Where and how a run happens: CPU count, load average, library versions.

    Timings (``ms_per_1000``, ``seconds``) mean little without these: on a shared machine
    they can be several times slower than on a quiet one.
    """
    import platform
    import sys

    conditions: dict[str, Any] = {
        "device": device_description(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        conditions["load_average_1min"] = round(os.getloadavg()[0], 2)
    return conditions


def device_description() -> str:
    """Which device Keras computes on, e.g. ``"GPU (1 x /physical_device:GPU:0)"``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # device discovery only

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU ({len(gpus)} x {gpus[0].name}), backend {backend}"
        return f"CPU ({os.cpu_count()} cores visible), backend {backend}"
    return f"backend {backend}, devices {keras.distribution.list_devices()}"


# ------------------------------------------------------------------------------ pipeline
@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "triggered tf.function retracing" warnings while the block runs.

    Every model gets its own predict function, so predicting with several models in a row
    looks like retracing to TensorFlow; the warning is noise here. The level is restored.
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
        check_output_path(save_student, suffix=".keras", flag="save_student")
    with _quiet_retracing_warnings():
        return _run(config, save_student, data_path)


def _run(
    config: ExperimentConfig,
    save_student: str | os.PathLike[str] | None,
    data_path: str | os.PathLike[str] | None,
) -> ExperimentResult:
    start = time.perf_counter()
    conditions_before = run_conditions()
    splits = prepare_data(config, data_path)
    teacher, teacher_history = train_teacher(config, splits)
    train_targets, val_targets = teacher_soft_targets(teacher, splits)

    # Every model is trained (and its epoch chosen on validation) before the test set is
    # touched; the test set is used once, below.
    trained = [
        train_students(config, splits, teacher, seed, train_targets, val_targets)
        for seed in config.seed_list()
    ]
    first = trained[0]  # the first seed's models are kept for plots and saving
    if save_student is not None:
        first.distilled.save(save_student)

    teacher_predictions = predict_classes(teacher, splits.x_test)
    predictions = {
        name: [predict_classes(pair.models()[name], splits.x_test) for pair in trained]
        for name in STUDENT_ROLES
    }
    load_before_timing = run_conditions().get("load_average_1min")
    reports = {
        "teacher": _report(
            "teacher", teacher, [teacher_predictions], splits.y_test, teacher_predictions,
            splits.x_test, [teacher_history],
        ),
    }
    for name in STUDENT_ROLES:
        reports[name] = _report(
            name, first.models()[name], predictions[name], splits.y_test,
            teacher_predictions, splits.x_test, [pair.histories[name] for pair in trained],
        )
    correct = {name: [p == splits.y_test for p in predictions[name]] for name in STUDENT_ROLES}
    comparisons = {
        f"{b}_vs_{a}": stats.compare(a, correct[a], b, correct[b]) for a, b in COMPARISONS
    }
    conditions = {
        **conditions_before,
        "load_average_1min": {
            "start": conditions_before.get("load_average_1min"),
            "before_timing": load_before_timing,
            "end": run_conditions().get("load_average_1min"),
        },
    }
    return ExperimentResult(
        config=config,
        num_test=len(splits.y_test),
        seconds=time.perf_counter() - start,
        device=device_description(),
        histories={"teacher": teacher_history, **first.histories},
        artifacts=Artifacts(
            teacher=teacher, scratch=first.scratch, distilled=first.distilled, splits=splits,
            smoothed=first.smoothed,
            predictions={"teacher": [teacher_predictions], **predictions},
        ),
        comparisons=comparisons,
        conditions=conditions,
        **reports,
    )


def check_output_path(path: str | os.PathLike[str], suffix: str | None, flag: str) -> Path:
    """Return ``path`` as a Path if a file can be written there, else raise ValueError.

    Checked before any training, so a typo does not cost a whole run.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{flag} path {str(path)!r} is a folder; give a file name inside it.")
    if suffix is not None and target.suffix.lower() != suffix:
        example = "student" if suffix == ".keras" else "comparison"
        raise ValueError(
            f"{flag} path {str(path)!r} must end in {suffix}; e.g. {example}{suffix}."
        )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"{flag} path {str(path)!r} cannot be written: the folder {str(parent)!r} does "
            "not exist; create it first or choose another path."
        )
    writable = os.access(target, os.W_OK) if target.exists() else os.access(parent, os.W_OK)
    if not writable:
        raise ValueError(
            f"{flag} path {str(path)!r} cannot be written (permission denied); choose a "
            "path in a folder you can write to."
        )
    return target


# ----------------------------------------------------------------------------- reporting
def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def format_table(result: ExperimentResult) -> str:
    """The comparison table that ``kdlib distill`` prints and notebook 04 shows."""
    seeds = result.config.seeds
    header = (
        f"{'model':<10} {'params':>9} {'size KB':>8} {'test accuracy %':>16} "
        f"{'errors':>7} {'agrees w/ teacher %':>20} {'best epochs':>16} {'ms / 1000 img':>14}"
    )
    lines = [header, "-" * len(header)]
    for report in (result.teacher, *result.students()):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher" and seeds > 1:
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        epochs = ",".join(map(str, report.best_epochs))
        lines.append(
            f"{report.name:<10} {report.params:>9,} {report.size_bytes / 1024:>8.1f} "
            f"{accuracy:>16} {report.test_errors:>7,} {100 * report.agreement:>20.2f} "
            f"{epochs:>16} {report.ms_per_1000:>14.2f}"
        )
    config = result.config
    lines.append("")
    lines.append(
        f"T = {config.temperature:g}, alpha = {config.alpha:g}, label smoothing = "
        f"{config.label_smoothing:g}, seeds = {seeds} "
        f"({', '.join(map(str, config.seed_list()))}), test images = {result.num_test:,}"
    )
    lines.append(
        f"each model keeps its best validation-accuracy epoch (patience {config.patience}; "
        f"at most {config.epochs} student and {config.teacher_epochs} teacher epochs); "
        "accuracy: mean ± std over seeds"
    )
    comparison = result.comparisons.get("distilled_vs_scratch")
    if comparison is not None:
        lines.append(f"distillation gain: {_gain_sentence(comparison)}")
    lines.append(f"{result.seconds:.0f} s on {result.device}")
    return "\n".join(lines)


def _gain_sentence(comparison: stats.PairedComparison) -> str:
    mean = comparison.mean
    text = f"{_points(mean.mean)} points of test accuracy"
    if not math.isnan(mean.low):
        text += (
            f" (95 % CI {_points(mean.low)} to {_points(mean.high)}, paired t-test "
            f"p = {_p(comparison.t_test.p_value)})"
        )
    return text


def format_statistics(result: ExperimentResult) -> str:
    """Every paired comparison: per-seed differences, mean with 95 % CI, paired t-test, and
    McNemar's test per seed and pooled (differences in points of test accuracy)."""
    lines = []
    seeds = result.config.seed_list()
    for name, c in result.comparisons.items():
        lines.append(f"{c.b} - {c.a} ({name})")
        lines.append(
            "  per seed:  " + "  ".join(
                f"seed {seed}: {_points(d)}" for seed, d in zip(seeds, c.differences)
            )
        )
        if math.isnan(c.mean.low):
            lines.append(f"  mean {_points(c.mean.mean)} points (one seed: no CI, no t-test)")
        else:
            lines.append(
                f"  mean {_points(c.mean.mean)} points, 95 % CI [{_points(c.mean.low)}, "
                f"{_points(c.mean.high)}]; paired t-test t({c.t_test.df}) = "
                f"{c.t_test.statistic:.2f}, p = {_p(c.t_test.p_value)}"
            )
        lines.append(
            f"  McNemar per seed (only {c.a} right / only {c.b} right, exact p):  " + "  ".join(
                f"{m.only_a}/{m.only_b} p={_p(m.p_value)}" for m in c.mcnemar
            )
        )
        lines.append(
            f"  McNemar pooled over seeds: {c.pooled.only_a}/{c.pooled.only_b}, "
            f"p = {_p(c.pooled.p_value)} (the same test images counted once per seed)"
        )
    return "\n".join(lines)


def _verdict(c: stats.PairedComparison) -> str:
    """Plain words for what a comparison shows (95 % CI of the mean difference)."""
    if math.isnan(c.mean.low):
        return "cannot be judged from one seed"
    if c.mean.low > 0:
        return f"**{c.b} is better** (the whole 95 % CI is above 0)"
    if c.mean.high < 0:
        return f"**{c.b} is worse** (the whole 95 % CI is below 0)"
    return "**no clear difference** (the 95 % CI contains 0)"


def summary_markdown(result: ExperimentResult) -> str:
    """The conclusions of a run in Markdown, every number taken from ``result``.

    Notebook 04 displays this instead of quoting numbers in hand-written prose.
    """
    config = result.config
    lines = [
        f"**This run** ({config.seeds} seed(s), {result.num_test:,} test images, "
        f"{result.seconds / 60:.1f} min on {result.device}):",
        "",
        "| model | test accuracy % (mean ± std) | errors (mean) | best epochs per seed |",
        "| --- | --- | --- | --- |",
    ]
    for report in (result.teacher, *result.students()):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher":
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        lines.append(
            f"| {report.name} | {accuracy} | {report.test_errors} | "
            f"{', '.join(map(str, report.best_epochs))} |"
        )
    lines.append("")
    for c in result.comparisons.values():
        sentence = f"- {c.b} − {c.a}: {_gain_sentence(c)}; McNemar pooled over seeds "
        sentence += (
            f"{c.pooled.only_a} vs {c.pooled.only_b} discordant images, "
            f"p = {_p(c.pooled.p_value)}. Verdict: {_verdict(c)}."
        )
        lines.append(sentence)
    return "\n".join(lines)
