"""Argument checks, each written once, used by every kdlib module and the ``kdlib`` command.

Each function returns the value in its canonical form (``int``, ``float``, a NumPy array, a
``Path``) or raises ``ValueError`` with a message that names the argument, the value received
and an example of a good one. No Keras import, so ``kdlib --help`` stays fast.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _real(value: Any) -> float:
    """``value`` as a float if it is a real number (not a bool, string or array), else nan."""
    if isinstance(value, (bool, str, bytes)) or hasattr(value, "__len__"):
        return math.nan
    try:
        return float(value)  # ints, floats, numpy scalars
    except (TypeError, ValueError):
        return math.nan


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value: Any, name: str, example: int = 3) -> int:
    """``value`` as an int > 0; a bool, a float such as 2.0 or a string is refused."""
    if not _is_int(value) or value <= 0:
        raise ValueError(
            f"{name} must be a positive integer, got {value!r}; e.g. {name}={example}."
        )
    return int(value)


def optional_positive_int(value: Any, name: str, example: int = 3) -> int | None:
    """None, or ``value`` as an int > 0 (see :func:`positive_int`)."""
    return None if value is None else positive_int(value, name, example)


def non_negative_int(value: Any, name: str, example: int = 0) -> int:
    """``value`` as an int >= 0; a bool or a float is refused."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}; e.g. {name}={example}.")
    return int(value)


def positive_number(value: Any, name: str, example: str) -> float:
    """``value`` as a finite float > 0 (a learning rate, a scale)."""
    number = _real(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be a finite number > 0, got {value!r}; e.g. {name}={example}."
        )
    return number


def temperature(value: Any, name: str = "temperature") -> float:
    """``value`` as a float T > 0 that divides the logits before the softmax."""
    number = _real(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be a finite number > 0, got {value!r}; typical values are 1 to 20 "
            f"(e.g. {name}=3.0)."
        )
    return number


def alpha(value: Any, name: str = "alpha") -> float:
    """``value`` as a float in [0, 1]: the weight of the hard-label loss."""
    number = _real(value)
    if not 0.0 <= number <= 1.0:  # nan fails too
        raise ValueError(
            f"{name} must be a number in [0, 1] (the weight of the hard-label loss), got "
            f"{value!r}; {name}=0.1 gives 10% hard labels and 90% distillation."
        )
    return number


def dropout(value: Any, name: str = "dropout") -> float:
    """``value`` as a float rate in [0, 1)."""
    number = _real(value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; e.g. {name}=0.2.")
    return number


def one_of(value: T, choices: Iterable[Any], name: str) -> T:
    """``value`` if it is one of ``choices`` (model names, verbosity levels, ...)."""
    options = list(choices)
    if isinstance(value, bool) or value not in options:
        raise ValueError(
            f"{name} must be one of {options}, got {value!r}; e.g. {name}={options[0]!r}."
        )
    return value


def layer_sizes(values: Any, name: str, example: str = "(800, 800)") -> tuple[int, ...]:
    """A non-empty sequence of positive ints (units or filters per layer) as a tuple."""
    sizes = () if isinstance(values, (str, bytes)) else tuple(values)
    if not sizes or not all(_is_int(v) and v > 0 for v in sizes):
        raise ValueError(
            f"{name} must be a non-empty sequence of positive integers, got {values!r}; "
            f"e.g. {name}={example}."
        )
    return tuple(int(v) for v in sizes)


def vector(
    values: Any, name: str, *, min_size: int = 1, non_negative: bool = False, example: str
) -> np.ndarray:
    """A 1-D float64 array of at least ``min_size`` finite numbers (>= 0 if asked)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        v = np.array([np.nan])
    if (
        v.ndim != 1
        or v.size < min_size
        or not np.all(np.isfinite(v))
        or (non_negative and np.any(v < 0))
    ):
        count = {1: "one", 2: "two"}.get(min_size, str(min_size))
        what = "finite numbers >= 0" if non_negative else "finite numbers"
        raise ValueError(
            f"{name} must be a 1-D sequence of at least {count} {what}, got {values!r}; "
            f"e.g. {name}={example}."
        )
    return v


def logit_vector(values: Any, name: str = "logits") -> np.ndarray:
    """One logit per class: a 1-D float64 array of at least two finite numbers."""
    return vector(values, name, min_size=2, example="[2.0, 1.0, 0.1]")


def temperatures(values: Any, name: str = "temperatures") -> np.ndarray:
    """A 1-D float64 array of temperatures, each finite and > 0."""
    try:
        grid = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        grid = np.array([np.nan])
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(
            f"{name} must be finite numbers > 0, got {values!r}; "
            f"e.g. {name}=np.geomspace(0.1, 100, 200)."
        )
    return grid


def class_labels(labels: Sequence[Any] | None, num_classes: int, of: str) -> list[str]:
    """One label per class as strings; ``"0", "1", ...`` when ``labels`` is None."""
    if labels is None:
        return [str(i) for i in range(num_classes)]
    names = [str(x) for x in labels]
    if len(names) != num_classes:
        raise ValueError(
            f"labels has {len(names)} entries but {of} has {num_classes}; "
            "give exactly one label per class."
        )
    return names


def output_path(path: str | os.PathLike[str], suffix: str | None, name: str) -> Path:
    """``path`` as a Path if a file can be written there, else raise ValueError.

    Checked before any long work, so a typo does not cost a training run.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{name} path {str(path)!r} is a folder; give a file name inside it.")
    if suffix is not None and target.suffix.lower() != suffix:
        raise ValueError(
            f"{name} path {str(path)!r} must end in {suffix}; e.g. {target.stem or 'out'}{suffix}."
        )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"{name} path {str(path)!r} cannot be written: the folder {str(parent)!r} does "
            "not exist; create it first or choose another path."
        )
    writable = os.access(target, os.W_OK) if target.exists() else os.access(parent, os.W_OK)
    if not writable:
        raise ValueError(
            f"{name} path {str(path)!r} cannot be written (permission denied); choose a "
            "path in a folder you can write to."
        )
    return target
