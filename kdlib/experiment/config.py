"""The settings of the MNIST experiment and the models it may use, checked when created.

:class:`ExperimentConfig` holds every setting; its field defaults are the full run.
``KDLIB_FAST=1`` changes only :data:`FAST_SETTINGS` (sizes and epochs), through
:meth:`ExperimentConfig.default`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from kdlib import config as kdconfig
from kdlib import models, validate
from kdlib.distribution import DISTRIBUTIONS

__all__ = [
    "ExperimentConfig",
    "FAST_SETTINGS",
    "FULL_SETTINGS",
    "STUDENTS",
    "TEACHERS",
]

#: Teacher architectures, by the name ``--teacher`` takes.
TEACHERS: dict[str, Callable[[], keras.Model]] = {
    # 421,642 parameters; reaches >= 99.0 % test accuracy in a few epochs.
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

#: What every model's epoch is chosen by (the same rule for all; ties go to the earlier).
STOPPING_MONITOR = "val_accuracy"


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of the experiment; the defaults are the full run.

    Use :meth:`default` for the full or the fast (``KDLIB_FAST=1``) configuration, with
    overrides: ``ExperimentConfig.default(temperature=4.0)``.

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
        ``(1 - label_smoothing) * one_hot + label_smoothing / num_classes``.
    epochs, teacher_epochs : int
        The most epochs each student (all alike) and the teacher may train; each model keeps
        the weights of its best validation epoch (see ``patience``).
    patience : int
        Training stops after this many epochs without a higher validation accuracy; the
        same for every model.
    batch_size : int
        Mini-batch size of training.
    seeds, seed : int
        The students are trained ``seeds`` times with seeds ``seed, seed + 1, ...``; the
        teacher once, with ``seed``.
    train_size, test_size : int or None
        Class-balanced subsets of the training images (after the validation split) and of
        the test images; None uses all.
    val_size : int
        Images held out of the training set for validation.
    learning_rate : float
        Adam's learning rate: constant for the students, the start of a cosine decay to 0
        for the teacher.
    verbose : {"summary", "auto", 0, 1, 2}
        "summary": one line per trained model; "auto"/1 and 2 add Keras' progress bars or
        one line per epoch; 0 is silent.
    distribution : {"none", "mirrored", "data-parallel"}
        Spread every model over this machine's devices: ``tf.distribute.MirroredStrategy``
        (TensorFlow) or ``keras.distribution.DataParallel`` (JAX); ``batch_size`` stays the
        global batch, so the training is that of one device (:mod:`kdlib.distribution`).
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
    verbose: int | str = "summary"
    distribution: str = "none"

    def __post_init__(self) -> None:
        def canonical(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        validate.one_of(self.teacher, TEACHERS, "teacher")
        validate.one_of(self.student, STUDENTS, "student")
        canonical("temperature", validate.temperature(self.temperature))
        canonical("alpha", validate.alpha(self.alpha))
        canonical("label_smoothing", validate.label_smoothing(self.label_smoothing))
        for name in ("epochs", "teacher_epochs", "patience", "batch_size", "seeds", "val_size"):
            canonical(name, validate.positive_int(getattr(self, name), name))
        for name in ("train_size", "test_size"):
            canonical(name, validate.optional_positive_int(getattr(self, name), name))
        canonical("seed", validate.seed(self.seed, "seed", count=self.seeds))
        lr = validate.positive_number(self.learning_rate, "learning_rate", "1e-3")
        canonical("learning_rate", lr)
        validate.one_of(self.verbose, VERBOSE_VALUES, "verbose")
        validate.one_of(self.distribution, DISTRIBUTIONS, "distribution")

    @classmethod
    def default(cls, *, fast: bool | None = None, **overrides: Any) -> ExperimentConfig:
        """The full configuration, or the fast one, plus ``overrides``.

        ``fast`` chooses (``kdlib distill --fast``); None reads ``KDLIB_FAST``
        (:func:`kdlib.config.pick`). Overrides that are None keep the default. Fast mode
        changes :data:`FAST_SETTINGS` only; the code path is the same.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(overrides) - set(names)
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; the settings are {names}.")
        settings = dict(kdconfig.pick(full={}, fast=FAST_SETTINGS, enabled=fast))
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    def seed_list(self) -> list[int]:
        """The seeds the students are trained with."""
        return [self.seed + i for i in range(self.seeds)]


#: What ``KDLIB_FAST=1`` changes: 5,000 training, 1,000 validation and 2,000 test images,
#: teacher 2 epochs, students 3, 2 seeds (the fewest that give a CI and a t-test).
FAST_SETTINGS: dict[str, Any] = {
    "epochs": 3,
    "teacher_epochs": 2,
    "seeds": 2,
    "train_size": 5000,
    "val_size": 1000,
    "test_size": 2000,
}

#: The same settings in the full run: the defaults of :class:`ExperimentConfig`.
FULL_SETTINGS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(ExperimentConfig) if f.name in FAST_SETTINGS
}
