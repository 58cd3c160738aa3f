"""Deprecated: kdlib 0.3.0 moved this module to :mod:`kdlib.check`.

This path goes in 0.4.0.
"""

from kdlib._deprecated import warn_moved
from kdlib.check import (
    ATOL,
    RTOL,
    STABLE_HINT,
    Case,
    Diagnose,
    as_array,
    close,
    compact,
    dirichlet,
    grade,
    ref_cross_entropy,
    ref_distillation,
    ref_distillation_gradient,
    ref_kl,
    ref_log_softmax,
    ref_softmax,
    seeded_rng,
)

__all__ = [
    "ATOL",
    "Case",
    "Diagnose",
    "RTOL",
    "STABLE_HINT",
    "as_array",
    "close",
    "compact",
    "dirichlet",
    "grade",
    "ref_cross_entropy",
    "ref_distillation",
    "ref_distillation_gradient",
    "ref_kl",
    "ref_log_softmax",
    "ref_softmax",
    "seeded_rng",
]

warn_moved(__name__, "kdlib.check")
