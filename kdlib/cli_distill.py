"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.cli.distill`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.cli.distill import (
    CALIBRATION_IMAGES,
    DEFAULT_SEEDS,
    LITERT_QUANTIZE,
    add_distill_parser,
)

__all__ = [
    "CALIBRATION_IMAGES",
    "DEFAULT_SEEDS",
    "LITERT_QUANTIZE",
    "add_distill_parser",
]

warn_moved(__name__, "kdlib.cli.distill")
