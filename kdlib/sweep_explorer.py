"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.sweep.explorer`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.sweep.explorer import (
    SweepExplorer,
)

__all__ = [
    "SweepExplorer",
]

warn_moved(__name__, "kdlib.sweep.explorer")
