"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.sweep.stacked`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.sweep.stacked import (
    StackedDense,
    StackedStudents,
)

__all__ = [
    "StackedDense",
    "StackedStudents",
]

warn_moved(__name__, "kdlib.sweep.stacked")
