"""Paired statistics for comparing two models: confidence intervals, t-test, McNemar.

Two ways to ask "is model B better than model A?", used by :mod:`kdlib.experiment`:

* **Across seeds** (training randomness). Train A and B from the same start on the same
  batches, once per seed; the per-seed differences of test accuracy ``d_i = b_i - a_i`` are
  paired. :func:`mean_ci` gives their mean with a Student-t confidence interval and
  :func:`paired_t_test` tests whether that mean is 0.
* **Across test images** (test-set sampling). For one trained pair, only the images that
  exactly one of the two models gets right carry information: McNemar's test
  (:func:`mcnemar`) asks whether "only B right" happens more often than "only A right".

Uses :mod:`scipy.stats` for the t and binomial distributions (scipy is a dependency).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kdlib import validate

__all__ = [
    "compare",
    "mcnemar",
    "mean_ci",
    "paired_t_test",
]


def _vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of finite numbers, got "
            f"{np.asarray(values).tolist()!r}."
        )
    return array


@dataclass(frozen=True)
class MeanCI:
    """A sample mean with a two-sided Student-t confidence interval.

    ``low`` and ``high`` are NaN for a single value, or when all values are equal: there is
    no spread to estimate an interval from (a zero-width interval would claim certainty).
    """

    mean: float
    low: float
    high: float
    confidence: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    r"""Mean of ``values`` and its confidence interval from the t distribution.

    .. math:: \bar d \pm t_{1 - (1 - c)/2,\; n - 1} \, \frac{s}{\sqrt n},

    with :math:`s` the sample standard deviation (ddof = 1). Assumes the values are
    independent draws from a roughly normal distribution (e.g. per-seed differences).
    """
    from scipy import stats  # imported here: kdlib modules import fast

    x = _vector(values, "values")
    confidence = validate.confidence(confidence)
    mean = float(np.mean(x))
    if x.size < 2 or np.all(x == x[0]):
        return MeanCI(mean, math.nan, math.nan, confidence, int(x.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * float(
        np.std(x, ddof=1) / math.sqrt(x.size)
    )
    return MeanCI(mean, mean - half, mean + half, confidence, int(x.size))


@dataclass(frozen=True)
class TTest:
    """A two-sided paired t-test: statistic, p-value and degrees of freedom.

    All NaN for fewer than two pairs, or when every difference is the same (s = 0).
    """

    statistic: float
    p_value: float
    df: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TTest:
    r"""Test whether the mean of the paired differences ``b - a`` is 0 (two-sided).

    .. math:: t = \frac{\bar d}{s_d / \sqrt n}, \qquad d_i = b_i - a_i,

    compared with Student's t with :math:`n - 1` degrees of freedom
    (:func:`scipy.stats.ttest_rel`). ``a[i]`` and ``b[i]`` must belong together (the same
    seed: same initial weights and batches).
    """
    from scipy import stats

    x, y = _vector(a, "a"), _vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"a and b must pair up (one value per seed each), got {x.size} and {y.size} values."
        )
    d = y - x
    if d.size < 2 or np.all(d == d[0]):
        return TTest(math.nan, math.nan, int(d.size) - 1)
    result = stats.ttest_rel(y, x)
    return TTest(float(result.statistic), float(result.pvalue), int(d.size) - 1)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired right/wrong outcomes of two models on the same images.

    Attributes
    ----------
    only_a : int
        Images that model A gets right and model B gets wrong.
    only_b : int
        Images that model B gets right and model A gets wrong.
    statistic : float
        The continuity-corrected chi-squared statistic
        ``(|only_a - only_b| - 1)^2 / (only_a + only_b)`` (0 when both counts are 0), for
        reference; the p-value does not rely on it.
    p_value : float
        Exact two-sided p-value: the binomial test of ``only_b`` out of
        ``only_a + only_b`` against probability 1/2 (1.0 when both counts are 0).
    """

    only_a: int
    only_b: int
    statistic: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer count >= 0, got {value!r}.")
    return int(value)


def mcnemar_from_counts(only_a: int, only_b: int) -> McNemar:
    r"""McNemar's test from the two discordant counts (see :class:`McNemar`).

    Under the null hypothesis (both models equally accurate) each discordant image is
    equally likely to favour either model, so :math:`\text{only}_b \sim
    \mathrm{Binomial}(\text{only}_a + \text{only}_b, 1/2)`; the exact test uses that
    distribution (:func:`scipy.stats.binomtest`).
    """
    from scipy import stats

    only_a, only_b = _count(only_a, "only_a"), _count(only_b, "only_b")
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 0.0, 1.0)
    statistic = (abs(only_a - only_b) - 1) ** 2 / n if only_a != only_b else 0.0
    p_value = float(stats.binomtest(only_b, n, 0.5).pvalue)
    return McNemar(only_a, only_b, float(statistic), min(1.0, p_value))


def mcnemar(correct_a: Any, correct_b: Any) -> McNemar:
    """McNemar's test from per-image right/wrong outcomes of two models.

    Parameters
    ----------
    correct_a, correct_b : array-like of bool, shape (n,)
        ``True`` where each model classifies the image correctly (the same images, in the
        same order).
    """
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.dtype != bool or b.dtype != bool:
        raise ValueError(
            "correct_a and correct_b must be boolean vectors of the same length (one entry "
            f"per test image), got shapes {a.shape} and {b.shape}, dtypes {a.dtype} and "
            f"{b.dtype}; pass e.g. predictions == labels."
        )
    return mcnemar_from_counts(int(np.sum(a & ~b)), int(np.sum(b & ~a)))


def pooled_mcnemar(tests: Iterable[McNemar]) -> McNemar:
    """McNemar's test on the discordant counts summed over several pairs (e.g. seeds).

    Caution: when the pairs are evaluated on the *same* test images, the pooled counts are
    not independent (a hard image is counted once per seed), so the pooled p-value is
    optimistic. The paired t-test across seeds is the test of training randomness.
    """
    tests = list(tests)
    if not tests:
        raise ValueError("pooled_mcnemar needs at least one McNemar result, got none.")
    return mcnemar_from_counts(sum(t.only_a for t in tests), sum(t.only_b for t in tests))


@dataclass(frozen=True)
class PairedComparison:
    """Model B against model A over paired seeds: everything :func:`compare` computes.

    Attributes
    ----------
    differences : tuple of float
        ``b - a`` per seed (test accuracies as fractions).
    mean : MeanCI
        Mean difference with its 95 % confidence interval.
    t_test : TTest
        Paired t-test of the per-seed differences.
    mcnemar : tuple of McNemar
        McNemar's test on the test images, per seed.
    pooled : McNemar
        McNemar's test on the discordant counts summed over seeds (see
        :func:`pooled_mcnemar` for its caveat).
    """

    a: str
    b: str
    differences: tuple[float, ...]
    mean: MeanCI
    t_test: TTest
    mcnemar: tuple[McNemar, ...]
    pooled: McNemar

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN (undefined for one seed) becomes None."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            return value

        return clean(
            {
                "a": self.a,
                "b": self.b,
                "differences": list(self.differences),
                "mean_difference": self.mean.mean,
                "ci95_low": self.mean.low,
                "ci95_high": self.mean.high,
                "t_statistic": self.t_test.statistic,
                "t_p_value": self.t_test.p_value,
                "mcnemar_per_seed": [m.to_dict() for m in self.mcnemar],
                "mcnemar_pooled": self.pooled.to_dict(),
            }
        )


def compare(
    name_a: str,
    correct_a: Sequence[Any],
    name_b: str,
    correct_b: Sequence[Any],
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare model B with model A from their per-seed right/wrong outcomes on test images.

    Parameters
    ----------
    name_a, name_b : str
        Names for the report, e.g. ``"scratch"`` and ``"distilled"``.
    correct_a, correct_b : sequence of boolean arrays
        One boolean vector per seed (``predictions == labels``), paired by position.
    """
    if len(correct_a) != len(correct_b) or len(correct_a) == 0:
        raise ValueError(
            f"correct_a and correct_b need one entry per seed each, got {len(correct_a)} and "
            f"{len(correct_b)}."
        )
    acc_a = [float(np.mean(c)) for c in correct_a]
    acc_b = [float(np.mean(c)) for c in correct_b]
    tests = tuple(mcnemar(a, b) for a, b in zip(correct_a, correct_b))
    return PairedComparison(
        a=name_a,
        b=name_b,
        differences=tuple(b - a for a, b in zip(acc_a, acc_b)),
        mean=mean_ci([b - a for a, b in zip(acc_a, acc_b)], confidence),
        t_test=paired_t_test(acc_a, acc_b),
        mcnemar=tests,
        pooled=pooled_mcnemar(tests),
    )
