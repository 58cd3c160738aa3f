"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.cli._flags`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.cli._flags import (
    STUDENT_CHOICES,
    TEACHER_CHOICES,
    T,
)

__all__ = [
    "STUDENT_CHOICES",
    "T",
    "TEACHER_CHOICES",
]

warn_moved(__name__, "kdlib.cli._flags")
