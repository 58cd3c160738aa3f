"""kdlib: the knowledge-distillation course library.

Modules: :mod:`kdlib.losses` (softmax with temperature, entropy, KL, distillation loss),
:mod:`kdlib.distiller` (the Keras ``Distiller``), :mod:`kdlib.soft_targets` (cached teacher
logits), :mod:`kdlib.data` (MNIST), :mod:`kdlib.models` (teacher and student factories),
:mod:`kdlib.experiment` (the MNIST experiment; :mod:`kdlib.experiment_config`,
:mod:`kdlib.report`), :mod:`kdlib.export` (LiteRT files), :mod:`kdlib.plotting` and
:mod:`kdlib.experiment_plots`, :mod:`kdlib.widgets`, :mod:`kdlib.check` (exercise
self-checks; engine in :mod:`kdlib.grading`), :mod:`kdlib.formatting` (``fmt``),
:mod:`kdlib.validate` (argument checks), :mod:`kdlib.config` (fast mode).

``kdlib.Distiller`` is imported lazily, so ``import kdlib.config`` (and ``kdlib --help``)
does not pay for importing Keras and its backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdlib.distiller import Distiller

__all__ = ["Distiller"]
__version__ = "0.1.0"


_SUBMODULES = (
    "check",
    "cli",
    "config",
    "dark_knowledge",
    "data",
    "distiller",
    "experiment",
    "experiment_config",
    "experiment_plots",
    "export",
    "formatting",
    "grading",
    "losses",
    "models",
    "plotting",
    "report",
    "soft_targets",
    "stacked",
    "sweep",
    "sweep_explorer",
    "sweep_plots",
    "validate",
    "widgets",
)


def __getattr__(name: str) -> Any:
    if name == "Distiller":
        from kdlib.distiller import Distiller

        return Distiller
    if name in _SUBMODULES:  # `import kdlib; kdlib.losses.…` works without a second import
        return importlib.import_module(f"kdlib.{name}")
    raise AttributeError(f"module 'kdlib' has no attribute {name!r}")
