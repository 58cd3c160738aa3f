r"""Helpers for Hinton et al.'s (2015) section 3 experiments in notebook 05.

*The missing digit*: a student distilled on a transfer set without any 3 has never seen a
3, yet learns much about 3s from the soft targets of the other digits; its remaining
errors on 3s come mostly from a bias of class 3 that is too low, and raising it fixes most
of them. :func:`best_bias` chooses that raise on validation data, never on the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "without_class",
    "only_classes",
    "errors_with_bias",
    "best_bias",
]


def without_class(x: np.ndarray, y: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` with every example of class ``cls`` removed (order kept)."""
    keep = np.asarray(y) != cls
    return np.asarray(x)[keep], np.asarray(y)[keep]


def only_classes(
    x: np.ndarray, y: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` restricted to the examples whose class is in ``classes``."""
    keep = np.isin(np.asarray(y), list(classes))
    return np.asarray(x)[keep], np.asarray(y)[keep]


def errors_with_bias(
    logits: Any, y: Any, cls: int | Sequence[int], bias: float
) -> tuple[int, int]:
    """Errors overall and on class(es) ``cls`` after adding ``bias`` to their logits.

    Returns
    -------
    (errors, errors on the examples whose label is in ``cls``)
    """
    classes = [cls] if np.isscalar(cls) else list(cls)
    shifted = np.array(logits, dtype=np.float64)
    shifted[:, classes] += bias
    wrong = np.argmax(shifted, axis=1) != np.asarray(y)
    return int(wrong.sum()), int(wrong[np.isin(np.asarray(y), classes)].sum())


def best_bias(logits: Any, y: Any, cls: int | Sequence[int], biases: Sequence[float]) -> float:
    """The bias in ``biases`` with the fewest errors on ``(logits, y)``: pass *validation*
    logits and labels; on ties the smallest bias wins."""
    if len(biases) == 0:
        raise ValueError("biases is empty; pass candidates, e.g. np.arange(0, 8.25, 0.25).")
    counts = [errors_with_bias(logits, y, cls, b)[0] for b in biases]
    return float(min(zip(counts, biases))[1])
