"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.export`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.export import (
    SUFFIX,
    LiteRTModel,
    check_images,
    check_interpreter,
    evaluate_litert,
    quiet_native_output,
)

__all__ = [
    "LiteRTModel",
    "SUFFIX",
    "check_images",
    "check_interpreter",
    "evaluate_litert",
    "quiet_native_output",
]

warn_moved(__name__, "kdlib.export")
