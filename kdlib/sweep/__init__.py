"""``kdlib sweep``: a temperature x alpha x seed grid of small students, trained at once.

:func:`run_sweep` (:mod:`~kdlib.sweep.grid`) trains the grid as one
:class:`~kdlib.sweep.stacked.StackedStudents` model; :mod:`~kdlib.sweep.plots` draws the
heatmap and :mod:`~kdlib.sweep.explorer` is notebook 05's interactive view of it.

The names are served from :mod:`~kdlib.sweep.grid` on first use, so that ``import kdlib``
(which imports :mod:`kdlib.sweep.stacked` to register its Keras classes) does not import the
experiment's report, SciPy and matplotlib with it.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdlib._deprecated import forward

__all__ = [
    "FULL_GRID",
    "SweepConfig",
    "SweepResult",
    "load_json",
    "run_sweep",
    "teacher_targets_per_student",
]

# kdlib 0.2.0's ``kdlib.sweep`` module also held these; they go in 0.4.0.
_moved = forward(__name__, dict.fromkeys(["FAST_GRID", "format_summary"], "kdlib.sweep.grid"))


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("kdlib.sweep.grid"), name)
    return _moved(name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
