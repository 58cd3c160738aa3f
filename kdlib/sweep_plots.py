"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.sweep.plots`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.sweep.plots import (
    grid_array,
    plot_sweep_heatmap,
)

__all__ = [
    "grid_array",
    "plot_sweep_heatmap",
]

warn_moved(__name__, "kdlib.sweep.plots")
