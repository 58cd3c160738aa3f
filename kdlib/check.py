r"""Self-checks for the notebook exercises.

You write a function; ``kdlib.check.<name>(your_function)`` calls it on random and edge-case
inputs, compares each result with the reference (:mod:`kdlib.losses` in float64), prints
what is wrong, and returns ``True`` only if every case matches::

    >>> import kdlib.check
    >>> def my_softmax(logits, temperature=1.0):
    ...     e = np.exp(np.asarray(logits) / temperature)
    ...     return e / e.sum(axis=-1, keepdims=True)
    >>> kdlib.check.softmax(my_softmax)
    softmax: 3 of 12 cases fail
      fails for logits [1000, 0], temperature=1: got [nan, nan], expected [1, 0] ...

Your function receives NumPy float64 arrays (vectors, and one batch of shape
``(batch, num_classes)`` where the last axis holds the classes) and may return anything
``numpy.asarray`` accepts. Each check compares with ``rtol=1e-4, atol=1e-6``, so float32
arithmetic is fine. NumPy warnings raised by your function are reported, not printed.

The checks of the distillation loss and its gradient are defined in
:mod:`kdlib.check`; the engine is :mod:`kdlib.check`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from kdlib import losses
from kdlib.formatting import fmt as _fmt

__all__ = [
    "softmax",
    "log_softmax",
    "kl_divergence",
    "cross_entropy",
    "distillation_loss",
    "distillation_gradient",
]


# ---------------- the engine: run a function on cases, compare with the reference, report it
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
        return _fmt(value)
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


# --------------------------- Self-checks of the distillation loss and its gradient (notebook 03)
def _logit_pairs(
    reference: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    hint: str,
    underflow_hint: str = STABLE_HINT,
) -> list[Case]:
    """The cases of both checks: the same (teacher, student, temperature) triples, graded
    against ``reference``; ``underflow_hint`` is shown for student logits of +-1000."""
    rng = seeded_rng()
    cases: list[Case] = []

    def add(t: Any, s: Any, temperature: float, case_hint: str = hint, what: str = "") -> None:
        t, s = as_array(t), as_array(s)
        label = (
            f"{what}teacher logits {compact(t, 4)}, student logits {compact(s, 4)}, "
            f"temperature={temperature:g}"
        )
        cases.append(Case((t, s, temperature), label, reference(t, s, temperature), case_hint))

    for temperature, n in ((1.0, 3), (2.0, 5), (4.0, 10), (10.0, 4)):
        add(np.round(rng.normal(0, 3, n), 2), np.round(rng.normal(0, 3, n), 2), temperature)
    add([2.0, 1.0, 0.1], [2.0, 1.0, 0.1], 3.0)
    add([1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0], 1.0, STABLE_HINT)
    add([5.0, 1.0, -2.0], [-1000.0, 0.0, 1000.0], 2.0, underflow_hint)
    add(
        [[5.0, 1.0, -2.0], [0.5, 0.2, 0.1]],
        [[4.0, 2.0, -1.0], [0.1, 0.2, 0.5]],
        4.0,
        "for a batch of shape (batch, num_classes), work along the last axis "
        "(axis=-1, keepdims=True where you normalise) and return one row per example.",
        what="a batch: ",
    )
    return cases


def distillation_loss(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(teacher_logits, student_logits, temperature)``.

    .. math:: T^2 \, \mathrm{KL}\big(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T)\big)

    one value per example (a scalar for 1-D logits). Reference:
    :func:`kdlib.losses.distillation_loss`.
    """
    hint = (
        "soften both with the same T, p = softmax(t / T) and q = softmax(s / T), take "
        "KL(p || q) = sum p (log p - log q) over the last axis, then multiply by T**2."
    )
    underflow = (
        "even a stable softmax underflows: softmax([-1000, 0, 1000] / 2) has q_0 = 0 "
        "exactly, so log(p / q) = inf. Take logs with log-softmax instead, log q = "
        "z - max(z) - log(sum(exp(z - max(z)))), and KL = sum p (log p - log q)."
    )
    cases = _logit_pairs(ref_distillation, hint, underflow)

    def diagnose(case: Case, got: np.ndarray) -> str | None:
        t, s, temperature = case.args
        with np.errstate(all="ignore"):
            if temperature != 1 and close(got, case.expected / temperature**2):
                return "the T**2 factor is missing: multiply KL(p_T || q_T) by T**2."
            if temperature != 1 and close(got, case.expected * temperature**2):
                return "T**2 is applied twice, or the logits are multiplied by T."
            if close(got, ref_distillation(s, t, temperature)):
                return "teacher and student are swapped: the teacher's p comes first."
        return None

    return grade("distillation_loss", student_fn, cases, diagnose)


def distillation_gradient(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(teacher_logits, student_logits, temperature)`` = the gradient

    .. math:: \frac{\partial}{\partial s}\, T^2\, \mathrm{KL}(p_T \,\|\, q_T)
              = T \, (q_T - p_T),
              \qquad p_T = \mathrm{softmax}(t/T),\; q_T = \mathrm{softmax}(s/T)

    with respect to the student logits (same shape as the logits).
    """
    hint = (
        "the gradient of KL(p_T || q_T) with respect to s is (q_T - p_T) / T; "
        "the loss has the factor T**2, so the answer is T * (q_T - p_T)."
    )
    cases = _logit_pairs(ref_distillation_gradient, hint)

    def diagnose(case: Case, got: np.ndarray) -> str | None:
        temperature = case.args[2]
        if close(got, -case.expected):
            return "the sign is flipped: the gradient is q_T - p_T (student minus teacher)."
        if temperature != 1 and close(got, case.expected / temperature**2):
            return "that is the gradient of KL without T**2, (q_T - p_T) / T; multiply by T**2."
        if temperature != 1 and close(got, case.expected / temperature):
            return "one factor of T is missing: d/ds softmax(s/T) brings a 1/T, T**2 / T = T."
        return None

    return grade("distillation_gradient", student_fn, cases, diagnose)


# ------------------------------------------------------------------------------ exercises
_LAST_AXIS = (
    "for a batch of shape (batch, num_classes), work along the last axis: "
    "max(..., axis=-1, keepdims=True) and sum(..., axis=-1, keepdims=True)."
)
_TEMPERATURE = "divide the logits by the temperature before the softmax: softmax(z / T)."


def softmax(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(logits, temperature)`` = :math:`\mathrm{softmax}(z / T)` (last axis).

    Reference: :func:`kdlib.losses.softmax_with_temperature`. Edge cases include logits such
    as ``[1000, 0]`` (overflow), ``[-1000, -1000]`` (underflow), a tiny temperature and a
    batch.

    Returns
    -------
    bool
        True if every case matches; prints "passed" or what is wrong.
    """
    rng = seeded_rng()
    cases: list[Case] = []

    def add(z: Any, t: float, hint: str, what: str = "logits") -> None:
        z = as_array(z)
        cases.append(
            Case((z, t), f"{what} {compact(z, 4)}, temperature={t:g}", ref_softmax(z, t), hint)
        )

    for t, n in ((1.0, 3), (1.0, 5), (0.5, 4), (2.0, 10), (5.0, 6)):
        add(np.round(rng.normal(0.0, 3.0, n), 2), t, _TEMPERATURE if t != 1 else STABLE_HINT)
    add([0.2, 0.3, 0.5], 1.0, "softmax(z) = exp(z) / sum(exp(z)).")
    add([1000.0, 0.0], 1.0, STABLE_HINT)
    add([-1000.0, -1000.0], 1.0, STABLE_HINT)
    add([0.0, 0.0, 0.0], 1.0, "equal logits give the uniform distribution.")
    add([2.0, 1.0, 0.1], 0.001, STABLE_HINT)
    add([3.0, 1.0, 0.2], 100.0, _TEMPERATURE)
    add([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], 2.0, _LAST_AXIS, what="batch of logits")
    return grade("softmax", student_fn, cases)


def log_softmax(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(logits, temperature)`` = :math:`\ln \mathrm{softmax}(z / T)`.

    .. math:: \ln \mathrm{softmax}(z)_i = z_i - \max_j z_j - \ln \sum_j e^{z_j - \max_k z_k}

    ``log(softmax(z))`` is not enough: for ``[1000, 0]`` the second probability underflows
    to 0 and its log is ``-inf``, while the exact answer is ``-1000``.
    """
    rng = seeded_rng()
    hint = (
        "log(softmax(z)) turns probabilities that underflow to 0 into -inf. Compute it "
        "directly: z - max(z) - log(sum(exp(z - max(z)))), along the last axis."
    )
    cases: list[Case] = []

    def add(z: Any, t: float, what: str = "logits") -> None:
        z = as_array(z)
        cases.append(
            Case((z, t), f"{what} {compact(z, 4)}, temperature={t:g}", ref_log_softmax(z, t), hint)
        )

    for t, n in ((1.0, 3), (0.5, 5), (2.0, 8), (4.0, 4)):
        add(np.round(rng.normal(0.0, 3.0, n), 2), t)
    add([1000.0, 0.0], 1.0)
    add([-1000.0, -1000.0, -1000.0], 1.0)
    add([50.0, 0.0, -50.0], 0.1)
    add([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], 1.0, what="batch of logits")
    return grade("log_softmax", student_fn, cases)


def _distributions_case(
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    p: Any,
    q: Any,
    hint: str,
    what: str = "",
) -> Case:
    p, q = as_array(p), as_array(q)
    label = f"{what}p={compact(p, 4)}, q={compact(q, 4)}"
    return Case((p, q), label, reference(p, q), hint)


def kl_divergence(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(p, q)`` = :math:`\mathrm{KL}(p \,\|\, q) = \sum_i p_i \ln(p_i/q_i)`.

    Nats (natural log), over the last axis; ``p`` and ``q`` are probabilities. Reference:
    :func:`kdlib.losses.kl_divergence`. Edge cases: equal distributions (0), zeros in ``p``
    (their terms are 0, the limit of ``p ln p``), ``q = 0`` where ``p > 0`` (``inf``), a
    batch (one value per row).
    """
    rng = seeded_rng()
    formula = "KL(p || q) = sum_i p_i * ln(p_i / q_i), with the natural log (nats)."
    zeros = (
        "a term with p_i = 0 is 0 (the limit of p ln p), but 0 * log(0) is nan in numpy: "
        "mask those terms, e.g. np.where(p > 0, p * np.log(p / q), 0.0) after silencing the "
        "warning, or sum only over p > 0. Never add an epsilon: it changes the value."
    )
    cases = [
        _distributions_case(ref_kl, [0.6, 0.4], [0.5, 0.5], formula),
        _distributions_case(ref_kl, [0.2, 0.3, 0.5], [0.1, 0.4, 0.5], formula),
    ]
    for n in (3, 5, 10):
        cases.append(_distributions_case(ref_kl, dirichlet(rng, n), dirichlet(rng, n), formula))
    cases += [
        _distributions_case(ref_kl, [0.25, 0.25, 0.5], [0.25, 0.25, 0.5], formula),
        _distributions_case(ref_kl, [0.0, 0.5, 0.5], [0.2, 0.4, 0.4], zeros),
        _distributions_case(ref_kl, [1.0, 0.0, 0.0], [0.7, 0.2, 0.1], zeros),
        _distributions_case(
            ref_kl,
            [0.5, 0.5],
            [1.0, 0.0],
            "if q_i = 0 where p_i > 0, KL is infinite: ln(p_i / 0) = inf.",
        ),
        _distributions_case(
            ref_kl,
            [[0.6, 0.4, 0.0], [0.2, 0.3, 0.5]],
            [[0.5, 0.25, 0.25], [0.1, 0.4, 0.5]],
            "for a batch, return one KL per row: sum over the last axis (axis=-1).",
            what="a batch ",
        ),
    ]

    def diagnose(case: Case, got: np.ndarray) -> str | None:
        p, q = case.args
        with np.errstate(all="ignore"):
            if close(got, ref_kl(q, p)):
                return "you computed KL(q || p): the sum is weighted by the FIRST argument p."
            if close(got, case.expected / math.log(2)):
                return "that is the value in bits (log2); use the natural log for nats."
        return None

    return grade("kl_divergence", student_fn, cases, diagnose)


def cross_entropy(student_fn: Callable[..., Any]) -> bool:
    r"""Check ``student_fn(p, q)`` = :math:`H(p, q) = -\sum_i p_i \ln q_i` (nats, last axis).

    Edge cases: a one-hot ``p`` (then H(p, q) = -ln q_y, the usual classification loss),
    zeros in both ``p`` and ``q`` at the same place (that term is 0), a batch.
    """
    rng = seeded_rng()
    formula = "H(p, q) = -sum_i p_i * ln(q_i), with the natural log (nats)."
    zeros = (
        "a term with p_i = 0 contributes 0 even where q_i = 0, but 0 * log(0) is nan in "
        "numpy: mask it with np.where(p > 0, ..., 0.0)."
    )
    cases = [_distributions_case(ref_cross_entropy, [0.6, 0.4], [0.5, 0.5], formula)]
    for n in (3, 6):
        cases.append(
            _distributions_case(ref_cross_entropy, dirichlet(rng, n), dirichlet(rng, n), formula)
        )
    cases += [
        _distributions_case(ref_cross_entropy, [0.0, 1.0, 0.0], [0.1, 0.7, 0.2], formula),
        _distributions_case(ref_cross_entropy, [0.0, 0.5, 0.5], [0.0, 0.5, 0.5], zeros),
        _distributions_case(
            ref_cross_entropy,
            [[0.6, 0.4, 0.0], [0.2, 0.3, 0.5]],
            [[0.5, 0.25, 0.25], [0.1, 0.4, 0.5]],
            "for a batch, return one value per row: sum over the last axis (axis=-1).",
            what="a batch ",
        ),
    ]

    def diagnose(case: Case, got: np.ndarray) -> str | None:
        p, q = case.args
        with np.errstate(all="ignore"):
            if close(got, ref_cross_entropy(q, p)):
                return "you swapped the arguments: H(p, q) averages ln q under p."
            if close(got, -case.expected):
                return "mind the sign: ln q <= 0, so H(p, q) = -sum p ln q >= 0."
        return None

    return grade("cross_entropy", student_fn, cases, diagnose)


def __getattr__(name: str) -> Any:
    if name == "fmt":  # deprecated in 0.2.0: fmt is printing, not grading
        warnings.warn(
            "kdlib.check.fmt moved to kdlib.formatting.fmt; use "
            "`from kdlib.formatting import fmt`.",
            DeprecationWarning,
            stacklevel=2,
        )
        from kdlib.formatting import fmt

        return fmt
    raise AttributeError(f"module 'kdlib.check' has no attribute {name!r}")
