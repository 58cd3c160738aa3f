"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.experiment.config`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.experiment.config import (
    FAST_SETTINGS,
    FULL_SETTINGS,
    MIN_COMPRESSION,
    STUDENTS,
    TEACHERS,
    ExperimentConfig,
)

__all__ = [
    "ExperimentConfig",
    "FAST_SETTINGS",
    "FULL_SETTINGS",
    "MIN_COMPRESSION",
    "STUDENTS",
    "TEACHERS",
]

warn_moved(__name__, "kdlib.experiment.config")
