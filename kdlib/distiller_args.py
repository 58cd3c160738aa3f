"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.distiller`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.distiller import (
    FunctionLoss,
    as_loss,
    class_weight_as_sample_weight,
)

__all__ = [
    "FunctionLoss",
    "as_loss",
    "class_weight_as_sample_weight",
]

warn_moved(__name__, "kdlib.distiller")
