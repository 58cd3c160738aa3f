"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.experiment.conclusions`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.experiment.conclusions import (
    format_statistics,
    gain_sentence,
    summary_markdown,
    verdict,
)

__all__ = [
    "format_statistics",
    "gain_sentence",
    "summary_markdown",
    "verdict",
]

warn_moved(__name__, "kdlib.experiment.conclusions")
