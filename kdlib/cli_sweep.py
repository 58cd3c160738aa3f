"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.cli.sweep`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.cli.sweep import (
    add_sweep_parser,
)

__all__ = [
    "add_sweep_parser",
]

warn_moved(__name__, "kdlib.cli.sweep")
