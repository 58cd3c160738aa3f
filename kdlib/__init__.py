"""kdlib: the knowledge-distillation course library.

The core, one concept a module: :mod:`kdlib.losses` (softmax with temperature, entropy, KL,
distillation loss), :mod:`kdlib.distiller` (the Keras ``Distiller``),
:mod:`kdlib.distillation_losses` (its parts: logits, hints, attention, relations, DKD),
:mod:`kdlib.soft_targets` (cached teacher logits), :mod:`kdlib.ensemble` (``Ensemble``, a
teacher made of several models), :mod:`kdlib.shifts` (whole-pixel shifted views and their
transfer set), :mod:`kdlib.data` (MNIST),
:mod:`kdlib.models` (teacher and student factories), :mod:`kdlib.stats` (paired t-test,
confidence interval, McNemar),
:mod:`kdlib.export` (LiteRT files), :mod:`kdlib.plotting`, :mod:`kdlib.widgets`,
:mod:`kdlib.dark_knowledge`, :mod:`kdlib.check` (exercise self-checks),
:mod:`kdlib.formatting` (``fmt``), :mod:`kdlib.io` (atomic files), :mod:`kdlib.config` (fast
mode), :mod:`kdlib.runtime` (a quiet start), :mod:`kdlib.validate` (argument checks), and for
language models :mod:`kdlib.sequence` (per-token KL, JSD, top-k KL, ``SequenceDistiller``),
:mod:`kdlib.tiny_language` (a language with exact probabilities) and
:mod:`kdlib.causal_transformer`.

Above it, the application layers as subpackages: :mod:`kdlib.experiment` (the MNIST
experiment of notebook 04 and ``kdlib distill``), :mod:`kdlib.sweep` (``kdlib sweep``) and
:mod:`kdlib.cli` (the ``kdlib`` command).

``import kdlib`` starts Keras (:func:`kdlib.runtime.start_quietly`) and imports the modules
whose classes carry ``keras.saving.register_keras_serializable`` (see :data:`KERAS_CLASSES`),
so saved Distillers reload after a plain ``import kdlib``.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdlib import runtime as _runtime

# Keras starts here, without TensorFlow's C++ start-up lines on stderr; the imports below
# register kdlib's Keras classes (KERAS_CLASSES).
_runtime.start_quietly()

from kdlib import causal_transformer as _causal_transformer  # noqa: E402, F401
from kdlib import sequence as _sequence  # noqa: E402, F401
from kdlib.distiller import Distiller  # noqa: E402
from kdlib.ensemble import Ensemble  # noqa: E402
from kdlib.sweep import stacked as _stacked  # noqa: E402, F401

__version__ = "0.3.0"

#: The modules notebooks and homework import (with the names in each one's ``__all__``):
#: kdlib's public API, recorded in tests/public_api.json and kept stable (docs/stability.md).
PUBLIC_MODULES = (
    "autodiff",
    "causal_transformer",
    "check",
    "config",
    "dark_knowledge",
    "data",
    "distillation_losses",
    "distiller",
    "distribution",
    "ensemble",
    "experiment",
    "experiment.conclusions",
    "experiment.config",
    "experiment.plots",
    "experiment.report",
    "export",
    "formatting",
    "io",
    "losses",
    "models",
    "plotting",
    "runtime",
    "sequence",
    "shifts",
    "soft_targets",
    "stats",
    "sweep",
    "sweep.explorer",
    "sweep.plots",
    "sweep.stacked",
    "tiny_language",
    "widgets",
)
__all__ = ["Distiller", "Ensemble", "__version__"]

#: Every class kdlib registers with Keras, by registered name: the module that defines it.
KERAS_CLASSES = {
    "kdlib>Distiller": "kdlib.distiller",
    "kdlib>FunctionLoss": "kdlib.distiller",
    "kdlib>Ensemble": "kdlib.ensemble",
    "kdlib>DistillationLoss": "kdlib.losses",
    "kdlib>LogitsDistillation": "kdlib.distillation_losses",
    "kdlib>FeatureDistillation": "kdlib.distillation_losses",
    "kdlib>AttentionTransfer": "kdlib.distillation_losses",
    "kdlib>RelationalDistillation": "kdlib.distillation_losses",
    "kdlib>DecoupledKD": "kdlib.distillation_losses",
    "kdlib>StackedDense": "kdlib.sweep.stacked",
    "kdlib>StackedStudents": "kdlib.sweep.stacked",
    "kdlib>SequenceDistiller": "kdlib.sequence",
    "kdlib>TokenAndPositionEmbedding": "kdlib.causal_transformer",
}

_TOP_LEVEL = {name for name in PUBLIC_MODULES if "." not in name} | {"cli"}


def __getattr__(name: str) -> Any:
    if name in _TOP_LEVEL:  # `import kdlib; kdlib.plotting.…` works without a second import
        return importlib.import_module(f"kdlib.{name}")
    raise AttributeError(f"module 'kdlib' has no attribute {name!r}")
