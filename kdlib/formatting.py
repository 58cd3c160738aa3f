"""``fmt``: numbers printed the same way on every NumPy version (every notebook uses it)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "fmt",
]


def fmt(values: Any, digits: int = 4) -> str:
    """Numbers with a fixed number of decimals: ``fmt([0.28943, 0.31987])`` is
    ``'[0.2894, 0.3199]'``, ``fmt(0.020135)`` is ``'0.0201'``; nan and inf print as
    ``nan``, ``inf`` and ``-inf``. Accepts scalars, nested sequences and backend tensors.

    Notebooks print with it instead of ``print(array)``, whose layout differs between NumPy
    versions.
    """
    if not isinstance(values, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        from keras import ops  # a backend tensor; plain numbers do not need Keras

        values = ops.convert_to_numpy(values)
    a = np.asarray(values, dtype=np.float64)
    if a.ndim > 0:
        return "[" + ", ".join(fmt(v, digits) for v in a) + "]"
    value = float(a)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{digits}f}"
    # -0.0000 is 0 to the reader
    return text[1:] if text.startswith("-") and float(text) == 0 else text
