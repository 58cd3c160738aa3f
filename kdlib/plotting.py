"""Matplotlib helpers shared by the notebooks and the ``kdlib distill`` command.

Every function draws on a ``matplotlib.axes.Axes`` (created if not given) and returns the
figure or axes, so it works without a display (``MPLBACKEND=Agg``) and in tests.
"""

from __future__ import annotations
