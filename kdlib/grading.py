"""The engine behind :mod:`kdlib.check`: run a student's function on cases, compare with the
float64 references of :mod:`kdlib.losses`, and print what is wrong (or "passed").

It also holds what the checks share: the references, the random inputs and the hint for an
unstable softmax (used by :mod:`kdlib.check` and :mod:`kdlib.check_distillation`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from kdlib import losses
from kdlib.formatting import fmt

RTOL = 1e-4
ATOL = 1e-6
_MAX_SHOWN = 3

#: The hint for a softmax that overflows or underflows, shared by several checks.
STABLE_HINT = (
    "exp overflows for large inputs (exp(1000) = inf, inf / inf = nan) and underflows to 0 "
    "for very negative ones (0 / 0 = nan): subtract the largest value first, "
    "softmax(z) = softmax(z - max(z)), which changes nothing mathematically."
)


@dataclass(frozen=True)
class Case:
    """One input of a check: the arguments, how to print them, and a hint if it fails."""

    args: tuple[Any, ...]
    description: str
    expected: np.ndarray
    hint: str


def compact(x: Any, digits: int = 6) -> str:
    """Numbers as a student would write them: ``[1000, 0]``, ``nan``, ``[[1, 2], [3, 4]]``."""
    a = np.asarray(x)
    if a.ndim > 0:
        return "[" + ", ".join(compact(v, digits) for v in a) + "]"
    value = float(a)
    if math.isnan(value) or math.isinf(value):
        return fmt(value)
    return f"{value:.{digits}g}"


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _as_result(value: Any) -> np.ndarray | None:
    """The student's return value as float64, or None if it is not an array of numbers."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        try:
            return _numpy(value)
        except Exception:  # noqa: BLE001 - anything unconvertible is reported to the student
            return None


def close(got: np.ndarray, expected: np.ndarray) -> bool:
    return got.shape == expected.shape and bool(
        np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=False)
    )


Diagnose = Callable[[Case, np.ndarray], str | None]


def _failure(case: Case, student_fn: Any, diagnose: Diagnose | None) -> tuple[str, str] | None:
    """Run one case: None if it passes, else (what went wrong, the hint to show)."""
    args = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in case.args)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
        warnings.simplefilter("always")
        try:
            raw = student_fn(*args)
        except Exception as exc:  # noqa: BLE001 - the student's error is the message
            return f"raised {type(exc).__name__}: {exc}", case.hint
    got = _as_result(raw)
    if got is None:
        return (
            f"returned {type(raw).__name__} {raw!r}, which is not an array of numbers",
            case.hint,
        )
    if got.shape != case.expected.shape:
        return f"got shape {got.shape}, expected shape {case.expected.shape}", case.hint
    if close(got, case.expected):
        return None
    message = f"got {compact(got)}, expected {compact(case.expected)}"
    numpy_warnings = sorted({str(w.message) for w in caught})
    if numpy_warnings:
        message += f" (numpy warned: {'; '.join(numpy_warnings)})"
    specific = diagnose(case, got) if diagnose is not None else None
    return message, specific or case.hint


def grade(name: str, student_fn: Any, cases: list[Case], diagnose: Diagnose | None = None) -> bool:
    """Call ``student_fn`` on every case, print the failures (or "passed"), return success."""
    if not callable(student_fn):
        raise TypeError(
            f"kdlib.check.{name} expects your function itself, got {student_fn!r} "
            f"({type(student_fn).__name__}); call it as kdlib.check.{name}(my_{name}), "
            f"without parentheses after my_{name}."
        )
    outcomes = [(case, _failure(case, student_fn, diagnose)) for case in cases]
    failures = [(case, failure) for case, failure in outcomes if failure is not None]
    if not failures:
        print(f"passed: {name} matches the reference on all {len(cases)} cases")
        return True
    print(f"{name}: {len(failures)} of {len(cases)} cases fail")
    for case, (message, _) in failures[:_MAX_SHOWN]:
        print(f"  fails for {case.description}: {message}")
    if len(failures) > _MAX_SHOWN:
        print(f"  ... and {len(failures) - _MAX_SHOWN} more")
    print(f"hint: {failures[0][1][1]}")
    return False


# ------------------------------------------------------------------- references (float64)
def ref_softmax(z: np.ndarray, t: float) -> np.ndarray:
    return _numpy(losses.softmax_with_temperature(z, t))


def ref_log_softmax(z: np.ndarray, t: float) -> np.ndarray:
    return _numpy(ops.log_softmax(ops.convert_to_tensor(z / t), axis=-1))


def ref_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return _numpy(losses.kl_divergence(p, q))


def ref_cross_entropy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return _numpy(losses.cross_entropy(p, q))


def ref_distillation(t: np.ndarray, s: np.ndarray, temperature: float) -> np.ndarray:
    return _numpy(losses.distillation_loss(t, s, temperature))


def ref_distillation_gradient(t: np.ndarray, s: np.ndarray, temperature: float) -> np.ndarray:
    # d/ds [T^2 KL(softmax(t/T) || softmax(s/T))] = T (softmax(s/T) - softmax(t/T))
    return temperature * (ref_softmax(s, temperature) - ref_softmax(t, temperature))


def seeded_rng() -> np.random.Generator:
    # A fixed seed: the same cases (and the same messages) on every run.
    return np.random.default_rng(2015)


def as_array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def dirichlet(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.dirichlet(np.ones(n))
