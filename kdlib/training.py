"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.experiment.training`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.experiment.training import (
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
    "TrainedTwins",
    "best_epoch",
    "build_teacher",
    "compression_ratio",
    "stopping_callback",
    "teacher_soft_targets",
    "train_students",
    "train_teacher",
    "twin_students",
]

warn_moved(__name__, "kdlib.experiment.training")
