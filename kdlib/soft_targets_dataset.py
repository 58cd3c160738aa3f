"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.soft_targets`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.soft_targets import (
    cache_soft_targets_dataset,
)

__all__ = [
    "cache_soft_targets_dataset",
]

warn_moved(__name__, "kdlib.soft_targets")
