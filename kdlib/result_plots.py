"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.experiment.plots`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.experiment.plots import (
    MODEL_COLORS,
    plot_comparison,
    plot_paired_differences,
    plot_training_curves,
)

__all__ = [
    "MODEL_COLORS",
    "plot_comparison",
    "plot_paired_differences",
    "plot_training_curves",
]

warn_moved(__name__, "kdlib.experiment.plots")
