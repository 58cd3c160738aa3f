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

__all__ = [
    "positive_int",
    "optional_positive_int",
    "non_negative_int",
    "seed",
    "positive_number",
    "MIN_TEMPERATURE",
    "MAX_TEMPERATURE",
    "temperature",
    "alpha",
    "dropout",
    "one_of",
    "layer_sizes",
    "vector",
    "logit_vector",
    "temperatures",
    "class_labels",
    "distinct_values",
    "output_path",
    "distinct_paths",
]

T = TypeVar("T")


def _real(value: Any) -> float:
    """``value`` as a float if it is a real number, else nan (so every range check fails).

    Real numbers: Python ints and floats, NumPy scalars, and 0-d arrays or tensors of a
    numeric dtype. Never strings, bools (also as NumPy or tensor values) or arrays.
    """
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return math.nan
    dtype = str(getattr(value, "dtype", ""))
    if any(kind in dtype for kind in ("bool", "str", "complex", "object")):
        return math.nan
    try:
        if np.ndim(value) != 0:
            return math.nan
        return float(value)  # ints, floats, numpy scalars, 0-d arrays and tensors
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


#: The largest seed NumPy's and Keras' random generators take (2**32 - 1).
MAX_SEED = 2**32 - 1


def seed(value: Any, name: str = "seed", count: int = 1) -> int:
    """``value`` as an int seed, such that ``value + count - 1`` is at most 2**32 - 1."""
    number = non_negative_int(value, name)
    if number + count - 1 > MAX_SEED:
        also = (
            f" (the {count} seeds run from {number} to {number + count - 1})" if count > 1 else ""
        )
        raise ValueError(
            f"{name} must be at most {MAX_SEED - count + 1} so that every seed is at most "
            f"{MAX_SEED} (2**32 - 1, NumPy's limit), got {value!r}{also}; e.g. {name}=0."
        )
    return number


def positive_number(value: Any, name: str, example: str) -> float:
    """``value`` as a finite float > 0 (a learning rate, a scale)."""
    number = _real(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be a finite number > 0, got {value!r}; e.g. {name}={example}."
        )
    return number


#: The temperatures the distillation loss accepts: within them it is accurate to float32
#: precision (tested against float64); beyond them logits / T leave float32's range.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 1e6


def temperature(value: Any, name: str = "temperature", *, distillation: bool = True) -> float:
    """``value`` as a float T > 0 that divides the logits before the softmax.

    With ``distillation=True`` (the default) T must also lie in [0.01, 1e6], where the
    distillation loss is accurate; a plain softmax (``distillation=False``) is exact at any
    finite T > 0.
    """
    number = _real(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(
            f"{name} must be a finite real number > 0, got {value!r}; typical values are 1 "
            f"to 20 (e.g. {name}=3.0)."
        )
    if distillation and not MIN_TEMPERATURE <= number <= MAX_TEMPERATURE:
        raise ValueError(
            f"{name} must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, got "
            f"{value!r}: beyond that range logits / T leave float32 and the distillation loss "
            f"is meaningless. Typical values are 1 to 20 (e.g. {name}=3.0)."
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


def label_smoothing(value: Any, name: str = "label_smoothing") -> float:
    """``value`` as a float in [0, 1): the share of the target spread over all classes."""
    number = _real(value)
    if not 0.0 <= number < 1.0:  # nan fails too
        raise ValueError(
            f"{name} must be a number in [0, 1), got {value!r}; e.g. {name}=0.1 (targets "
            "0.91 on the labelled class and 0.01 on each other of 10 classes)."
        )
    return number


def confidence(value: Any, name: str = "confidence") -> float:
    """``value`` as a float in (0, 1): the level of a confidence interval."""
    number = _real(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}; e.g. {name}=0.95.")
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


def distinct_values(values: Sequence[Any], name: str, example: str) -> tuple[Any, ...]:
    """``values`` as a tuple if no value occurs twice (2 and 2.0 are the same value).

    For grids: a repeated value would count one cell's runs twice.
    """
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ValueError(
                f"{name} lists {value!r} more than once ({list(values)!r}); give each value "
                f"once, e.g. {name}={example}."
            )
        seen.append(value)
    return tuple(values)


def output_path(path: str | os.PathLike[str], suffix: str | None, name: str) -> Path:
    """``path`` as a Path if a file can be written there, else raise ValueError.

    Checked before any long work, so a typo does not cost a training run. The folder is
    probed by creating (and removing) a temporary file in it, as the atomic write will:
    permission bits alone say yes for folders such as /proc. The suffix must match exactly
    (Keras refuses ``.KERAS``).
    """
    from kdlib import io  # the writer whose temporary file the probe creates

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{name} path {str(path)!r} is a folder; give a file name inside it.")
    if suffix is not None and target.suffix != suffix:
        raise ValueError(
            f"{name} path {str(path)!r} must end in {suffix} (lower case); "
            f"e.g. {target.stem or 'out'}{suffix}."
        )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"{name} path {str(path)!r} cannot be written: the folder {str(parent)!r} does "
            "not exist; create it first or choose another path."
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(
            f"{name} path {str(path)!r} cannot be written (the file is read-only); choose "
            "another path or make it writable."
        )
    try:
        io.probe_folder(target)
    except OSError as err:
        raise ValueError(
            f"{name} path {str(path)!r} cannot be written ({err.strerror or err}); choose a "
            "path in a folder you can write to."
        ) from None
    return target


def distinct_paths(paths: dict[str, str | os.PathLike[str] | None]) -> None:
    """Raise if two of the named output paths (None: not used) are the same file."""
    seen: dict[str, str] = {}
    for name, path in paths.items():
        if path is None:
            continue
        key = os.path.normcase(os.path.realpath(path))
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {name} name the same file ({str(path)!r}): one would "
                "overwrite the other. Give each output its own path."
            )
        seen[key] = name
