"""``kdlib sweep``: a temperature x alpha x seed grid of small students, trained at once.

:func:`run_sweep` (:mod:`~kdlib.sweep.grid`) trains the grid as one
:class:`~kdlib.sweep.stacked.StackedStudents` model; :mod:`~kdlib.sweep.plots` draws the
heatmap and :mod:`~kdlib.sweep.explorer` is notebook 05's interactive view of it.
"""

from kdlib._deprecated import forward
from kdlib.sweep.grid import FULL_GRID, SweepConfig, SweepResult, load_json, run_sweep

__all__ = ["FULL_GRID", "SweepConfig", "SweepResult", "load_json", "run_sweep"]

# kdlib 0.2.0's ``kdlib.sweep`` module also held these; they go in 0.4.0.
__getattr__ = forward(__name__, dict.fromkeys(["FAST_GRID", "format_summary"], "kdlib.sweep.grid"))
