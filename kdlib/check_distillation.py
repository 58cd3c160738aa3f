"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.check`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.check import (
    distillation_gradient,
    distillation_loss,
)

__all__ = [
    "distillation_gradient",
    "distillation_loss",
]

warn_moved(__name__, "kdlib.check")
