"""The :class:`kdlib.Distiller`'s ``compile`` and ``fit`` arguments, turned into what Keras takes.

:func:`as_loss` accepts a ``keras.losses.Loss`` or a plain per-example function
``fn(y_true, y_pred)``, which it wraps in :class:`FunctionLoss` (registered with Keras as
``"kdlib>FunctionLoss"``, so a compiled Distiller saves and loads with it; importable from
:mod:`kdlib.distiller`). :func:`class_weight_as_sample_weight` gives ``class_weight`` its
effect with cached targets, which Keras would not apply to a dict of targets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

__all__ = [
    "FunctionLoss",
    "as_loss",
    "class_weight_as_sample_weight",
]


@keras.saving.register_keras_serializable(package="kdlib")
class FunctionLoss(keras.losses.Loss):
    """Wrap a per-example loss function ``fn(y_true, y_pred)`` as a serializable Loss."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or _scope_name(fn), **kwargs)
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.fn(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["fn"] = keras.saving.serialize_keras_object(self.fn)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FunctionLoss:
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def _scope_name(fn: Callable[..., Any]) -> str:
    """A loss name that is valid as a TensorFlow name scope.

    Keras opens a name scope with the loss's name; ``"<lambda>"`` is not a valid one, and
    TensorFlow then leaves its scope stack broken for the rest of the process.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "", getattr(fn, "__name__", "") or "")
    name = name.lstrip("_.-")
    return name or "function_loss"


def as_loss(fn: Any, argument: str) -> keras.losses.Loss:
    """``fn`` as a Keras Loss: a Loss as it is, a function wrapped in :class:`FunctionLoss`."""
    if isinstance(fn, keras.losses.Loss):
        return fn
    if isinstance(fn, str) or not callable(fn):
        raise ValueError(
            f"{argument} must be a keras.losses.Loss or a function (y_true, y_pred) -> "
            f"per-example losses, got {fn!r}. Strings are not accepted because "
            "'sparse_categorical_crossentropy' expects probabilities, and the student "
            "outputs logits: use keras.losses.SparseCategoricalCrossentropy(from_logits=True)."
        )
    return FunctionLoss(fn)


def class_weight_as_sample_weight(labels: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keras applies ``class_weight`` to single-output targets only; with cached targets
    (a dict) the same weights become per-example ``sample_weight``.

    ``labels`` are the cached targets' labels; ``kwargs`` are ``fit``'s keyword arguments,
    returned without ``class_weight`` and with ``sample_weight`` (times any given one).
    """
    kwargs = dict(kwargs)
    class_weight = kwargs.pop("class_weight")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    missing = sorted(set(np.unique(labels).tolist()) - set(map(int, class_weight)))
    if missing:
        raise ValueError(
            f"class_weight has no weight for the label(s) {missing}; give one weight per "
            f"class, e.g. {{0: 1.0, 1: 2.0, ...}}."
        )
    lookup = np.zeros(max(map(int, class_weight)) + 1, dtype=np.float32)
    for label, weight in class_weight.items():
        lookup[int(label)] = float(weight)
    weights = lookup[labels]
    if kwargs.get("sample_weight") is not None:
        weights = weights * np.asarray(kwargs["sample_weight"], dtype=np.float32)
    kwargs["sample_weight"] = weights
    return kwargs
