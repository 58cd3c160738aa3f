"""Old import paths of kdlib 0.2.0, kept for one minor release (docs/stability.md).

Each old module (``kdlib/training.py``, ...) is a shim that re-exports its names from their
new home and calls :func:`warn_moved`; a package whose old module lost names forwards them
with :func:`forward`. Both go in 0.4.0.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.4.0"


#: Every module path of 0.2.0 that 0.3.0 moved: its new home (each old one is a shim).
MOVED = {
    "kdlib.check_distillation": "kdlib.check",
    "kdlib.cli_args": "kdlib.cli._flags",
    "kdlib.cli_distill": "kdlib.cli.distill",
    "kdlib.cli_sweep": "kdlib.cli.sweep",
    "kdlib.conclusions": "kdlib.experiment.conclusions",
    "kdlib.distiller_args": "kdlib.distiller",
    "kdlib.experiment_config": "kdlib.experiment.config",
    "kdlib.experiment_plots": "kdlib.experiment.plots",
    "kdlib.grading": "kdlib.check",
    "kdlib.litert_model": "kdlib.export",
    "kdlib.measurements": "kdlib.experiment.report",
    "kdlib.mnist_file": "kdlib.data",
    "kdlib.model_checks": "kdlib.distiller",
    "kdlib.report": "kdlib.experiment.report",
    "kdlib.result_plots": "kdlib.experiment.plots",
    "kdlib.soft_targets_dataset": "kdlib.soft_targets",
    "kdlib.stacked": "kdlib.sweep.stacked",
    "kdlib.sweep_explorer": "kdlib.sweep.explorer",
    "kdlib.sweep_plots": "kdlib.sweep.plots",
    "kdlib.training": "kdlib.experiment.training",
}


def warn_moved(old: str, new: str) -> None:
    """Warn once per import that module ``old`` moved to ``new``."""
    warnings.warn(
        f"{old} moved to {new} in kdlib 0.3.0 and goes in {REMOVED_IN}: import from {new}.",
        DeprecationWarning,
        stacklevel=3,
    )


def forward(package: str, moved: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves the names in ``moved`` (name: new module), warning."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        warnings.warn(
            f"{package}.{name} moved to {moved[name]}.{name} in kdlib 0.3.0 and goes in "
            f"{REMOVED_IN}: import it from {moved[name]}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__
