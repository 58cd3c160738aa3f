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
:mod:`kdlib.check_distillation`; the engine is :mod:`kdlib.grading`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from kdlib.check_distillation import distillation_gradient, distillation_loss
from kdlib.grading import (
    STABLE_HINT,
    Case,
    as_array,
    close,
    compact,
    dirichlet,
    grade,
    ref_cross_entropy,
    ref_kl,
    ref_log_softmax,
    ref_softmax,
    seeded_rng,
)

__all__ = [
    "softmax",
    "log_softmax",
    "kl_divergence",
    "cross_entropy",
    "distillation_loss",
    "distillation_gradient",
]

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
