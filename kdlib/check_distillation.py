"""Self-checks of the distillation loss and its gradient (notebook 03).

``kdlib.check.distillation_loss(fn)`` and ``kdlib.check.distillation_gradient(fn)``: both
call ``fn(teacher_logits, student_logits, temperature)`` on the same pairs of logits (random,
overflowing, underflowing, a batch) and compare with :mod:`kdlib.losses` in float64. Import
them from :mod:`kdlib.check`, with the checks of softmax, KL and cross-entropy; the engine is
:mod:`kdlib.grading`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kdlib.grading import (
    STABLE_HINT,
    Case,
    as_array,
    close,
    compact,
    grade,
    ref_distillation,
    ref_distillation_gradient,
    seeded_rng,
)

__all__ = [
    "distillation_loss",
    "distillation_gradient",
]


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
