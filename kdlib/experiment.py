"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

One pipeline, two front ends: :func:`run_experiment` loads MNIST, trains a teacher, then
trains a small student twice, once from scratch and once distilled from the teacher, from
identical initial weights and with the same data order, and returns an
:class:`ExperimentResult` that both front ends format (:func:`format_table`,
:meth:`ExperimentResult.to_json_dict`).

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
from kdlib import data, models
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

VERBOSE_VALUES = ("auto", 0, 1, 2)

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
    "epochs": 30,
    "teacher_epochs": 8,
    "train_size": None,
    "val_size": 5000,
    "test_size": None,
}
FAST_SETTINGS: dict[str, Any] = {
    "epochs": 3,
    "teacher_epochs": 2,
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
    epochs, teacher_epochs : int
        Epochs for each student (scratch and distilled alike) and for the teacher.
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
    verbose : {"auto", 0, 1, 2}
        Keras ``fit`` verbosity: progress bars ("auto"/1), one line per epoch (2), silent (0).
    """

    teacher: str = "cnn"
    student: str = "mlp"
    temperature: float = 4.0
    alpha: float = 0.3
    epochs: int = 30
    teacher_epochs: int = 8
    batch_size: int = 128
    seeds: int = 1
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
        for name in ("epochs", "teacher_epochs", "batch_size", "seeds", "val_size"):
            _check_positive_int(getattr(self, name), name)
        for name in ("train_size", "test_size"):
            _check_positive_int(getattr(self, name), name, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or (
            self.seed < 0
        ):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}; e.g. seed=0.")
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
                "use 'auto' for progress bars or 0 for silence."
            )

    @classmethod
    def default(cls, **overrides: Any) -> ExperimentConfig:
        """The full configuration, or the fast one when ``KDLIB_FAST=1``, plus ``overrides``.

        Full: all 55,000 training images (5,000 held out), teacher 8 epochs, students 30.
        Fast: 5,000 training, 1,000 validation and 2,000 test images, teacher 2 epochs,
        students 3. Only sizes and epochs differ; the code path is the same.
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


@dataclass
class Artifacts:
    """The trained models (first seed) and test data, for plots; not part of the report."""

    teacher: keras.Model
    scratch: keras.Model
    distilled: keras.Model
    splits: Splits


@dataclass
class ExperimentResult:
    """The outcome of :func:`run_experiment`.

    ``histories`` holds the Keras ``History.history`` dicts of the teacher and of the first
    seed's two students, by the names ``"teacher"``, ``"scratch"``, ``"distilled"``.
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

    @property
    def gain(self) -> float:
        """Distilled minus scratch mean test accuracy (a fraction, not points)."""
        return self.distilled.test_accuracy - self.scratch.test_accuracy

    def gain_exceeds_noise(self) -> bool:
        """True if the gain exceeds the larger of the two students' standard deviations."""
        noise = max(self.scratch.test_accuracy_std, self.distilled.test_accuracy_std)
        return self.gain > noise

    def to_json_dict(self) -> dict[str, Any]:
        """The report in the schema of ``kdlib distill --json``."""

        def student(report: ModelReport) -> dict[str, Any]:
            return {
                "params": int(report.params),
                "test_accuracy": float(report.test_accuracy),
                "test_accuracy_std": float(report.test_accuracy_std),
                "test_errors": int(report.test_errors),
            }

        return {
            "teacher": {
                "params": int(self.teacher.params),
                "test_accuracy": float(self.teacher.test_accuracy),
                "test_errors": int(self.teacher.test_errors),
            },
            "scratch": student(self.scratch),
            "distilled": student(self.distilled),
            "temperature": float(self.config.temperature),
            "alpha": float(self.config.alpha),
            "seeds": int(self.config.seeds),
            "seconds": float(self.seconds),
        }


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


def twin_students(name: str, seed: int) -> tuple[keras.Model, keras.Model]:
    """Two uncompiled copies of one student with identical initial weights.

    The first is trained from scratch, the second distilled, so any difference between
    them after training comes from the loss alone.
    """
    _check_name(name, STUDENTS, "student")
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


def _cross_entropy() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


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
        teacher, keras.optimizers.Adam(schedule), config, splits, config.teacher_epochs,
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
    """Train ``model`` on the hard labels alone (cross-entropy), the global seed reset to
    ``seed`` first so that the batch order is reproducible; return ``History.history``."""
    model.compile(optimizer=optimizer, loss=_cross_entropy(), metrics=["accuracy"])
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
class StudentPair:
    """The two students of one seed, trained, and their histories."""

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
) -> StudentPair:
    """Train one student from scratch and its twin by distillation, for the same epochs.

    Both start from the same initial weights (:func:`twin_students`) and see the training
    images in the same order: the global seed is reset to ``seed`` before each ``fit``, so
    the shuffles are the same. ``train_targets``/``val_targets`` are cached soft targets
    (computed here if not given).
    """
    if train_targets is None:
        train_targets = _cached_targets(teacher, splits.x_train, splits.y_train)
    if val_targets is None:
        val_targets = _cached_targets(teacher, splits.x_val, splits.y_val)
    scratch, distilled = twin_students(config.student, seed)
    check_compression(teacher, scratch)

    scratch_history = _fit_on_labels(
        scratch, keras.optimizers.Adam(config.learning_rate), config, splits, config.epochs,
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
    return StudentPair(
        seed=seed,
        scratch=scratch,
        distilled=distilled,
        histories={"scratch": scratch_history, "distilled": distilled_history.history},
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
) -> ModelReport:
    """Summarise one model over seeds (one entry of ``predictions`` per seed)."""
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
    )


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
    splits = prepare_data(config, data_path)
    teacher, teacher_history = train_teacher(config, splits)
    train_targets = _cached_targets(teacher, splits.x_train, splits.y_train)
    val_targets = _cached_targets(teacher, splits.x_val, splits.y_val)
    teacher_predictions = predict_classes(teacher, splits.x_test)

    pairs = []
    predictions: dict[str, list[np.ndarray]] = {"scratch": [], "distilled": []}
    for seed in config.seed_list():
        pair = train_students(config, splits, teacher, seed, train_targets, val_targets)
        predictions["scratch"].append(predict_classes(pair.scratch, splits.x_test))
        predictions["distilled"].append(predict_classes(pair.distilled, splits.x_test))
        if not pairs:
            pairs.append(pair)  # keep the first seed's models for plots and saving
    first = pairs[0]
    if save_student is not None:
        first.distilled.save(save_student)

    reports = {
        "teacher": _report(
            "teacher", teacher, [teacher_predictions], splits.y_test, teacher_predictions,
            splits.x_test,
        ),
        "scratch": _report(
            "scratch", first.scratch, predictions["scratch"], splits.y_test,
            teacher_predictions, splits.x_test,
        ),
        "distilled": _report(
            "distilled", first.distilled, predictions["distilled"], splits.y_test,
            teacher_predictions, splits.x_test,
        ),
    }
    return ExperimentResult(
        config=config,
        num_test=len(splits.y_test),
        seconds=time.perf_counter() - start,
        device=device_description(),
        histories={"teacher": teacher_history, **first.histories},
        artifacts=Artifacts(
            teacher=teacher, scratch=first.scratch, distilled=first.distilled, splits=splits
        ),
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
def format_table(result: ExperimentResult) -> str:
    """The comparison table that ``kdlib distill`` prints and notebook 04 shows."""
    seeds = result.config.seeds
    header = (
        f"{'model':<10} {'params':>9} {'size KB':>8} {'test accuracy %':>16} "
        f"{'errors':>7} {'agrees w/ teacher %':>20} {'ms / 1000 img':>14}"
    )
    lines = [header, "-" * len(header)]
    for report in (result.teacher, result.scratch, result.distilled):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher" and seeds > 1:
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        lines.append(
            f"{report.name:<10} {report.params:>9,} {report.size_bytes / 1024:>8.1f} "
            f"{accuracy:>16} {report.test_errors:>7,} {100 * report.agreement:>20.2f} "
            f"{report.ms_per_1000:>14.2f}"
        )
    config = result.config
    lines.append("")
    lines.append(
        f"T = {config.temperature:g}, alpha = {config.alpha:g}, student epochs = "
        f"{config.epochs}, teacher epochs = {config.teacher_epochs}, seeds = {seeds} "
        f"({', '.join(map(str, config.seed_list()))}), test images = {result.num_test:,}"
    )
    line = f"distillation gain: {100 * result.gain:+.2f} points of test accuracy"
    if seeds > 1:
        noise = max(result.scratch.test_accuracy_std, result.distilled.test_accuracy_std)
        relation = ">" if result.gain_exceeds_noise() else "<="
        line += f" ({relation} the larger std, {100 * noise:.2f})"
    lines.append(line)
    lines.append(f"{result.seconds:.0f} s on {result.device}")
    return "\n".join(lines)
