"""kdlib.stats against published textbook results and values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdlib import stats

# Student's sleep data (Cushny & Peebles 1905), R's `sleep` data set: extra hours of sleep
# of ten patients under two drugs. R: t.test(extra ~ group, data = sleep, paired = TRUE)
# prints t = -4.0621, df = 9, p-value = 0.002833, 95 % CI -2.4598858 -0.7001142,
# mean difference -1.58 (group 1 minus group 2).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_t_test_reproduces_r_on_the_sleep_data():
    result = stats.paired_t_test(SLEEP_1, SLEEP_2)  # tests SLEEP_2 - SLEEP_1
    assert result.statistic == pytest.approx(4.0621, abs=1e-4)
    assert result.p_value == pytest.approx(0.002833, abs=1e-6)
    assert result.df == 9
    # Swapping the models flips the sign only.
    swapped = stats.paired_t_test(SLEEP_2, SLEEP_1)
    assert swapped.statistic == pytest.approx(-result.statistic)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_mean_ci_reproduces_r_on_the_sleep_data():
    d = np.subtract(SLEEP_2, SLEEP_1)
    ci = stats.mean_ci(d)
    assert ci.mean == pytest.approx(1.58)
    assert (ci.low, ci.high) == pytest.approx((0.7001142, 2.4598858), abs=1e-7)
    assert ci.n == 10 and ci.confidence == 0.95


def test_three_differences_against_the_closed_form_t_distribution_with_two_df():
    """For df = 2 Student's t has a closed form: P(|T| > t) = 1 - t / sqrt(t^2 + 2), and
    the quantile q is (2q - 1) / sqrt(2 q (1 - q))."""
    a, b = [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]  # differences 1, 2, 3: mean 2, s = 1
    t = 2.0 / (1.0 / math.sqrt(3))
    result = stats.paired_t_test(a, b)
    assert result.statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    q = 0.975
    half = (2 * q - 1) / math.sqrt(2 * q * (1 - q)) / math.sqrt(3)
    ci = stats.mean_ci([1.0, 2.0, 3.0])
    assert (ci.low, ci.high) == pytest.approx((2 - half, 2 + half))
    ci90 = stats.mean_ci([1.0, 2.0, 3.0], confidence=0.9)
    assert ci.low < ci90.low < 2 < ci90.high < ci.high


def test_one_seed_has_no_interval_and_no_test():
    ci = stats.mean_ci([0.004])
    assert ci.mean == 0.004 and math.isnan(ci.low) and math.isnan(ci.high)
    assert math.isnan(stats.paired_t_test([0.97], [0.98]).p_value)
    # Identical differences: no spread, so no t statistic (not a division by zero) and no
    # interval (not one of zero width).
    assert math.isnan(stats.paired_t_test([1.0, 2.0], [2.0, 3.0]).statistic)
    flat = stats.mean_ci([0.01, 0.01, 0.01])
    assert flat.mean == pytest.approx(0.01) and math.isnan(flat.low) and math.isnan(flat.high)


@pytest.mark.parametrize(
    ("only_a", "only_b", "p_value"),
    [
        # Exact binomial, two-sided, by hand: 2 * sum_{k <= min} C(n, k) / 2^n.
        (1, 6, 2 * (1 + 7) / 2**7),
        (0, 5, 2 * 1 / 2**5),
        (8, 2, 2 * (1 + 10 + 45) / 2**10),
        (3, 3, 1.0),
        (0, 0, 1.0),
    ],
)
def test_mcnemar_exact_p_values_computed_by_hand(only_a, only_b, p_value):
    result = stats.mcnemar_from_counts(only_a, only_b)
    assert result.p_value == pytest.approx(p_value)
    assert (result.only_a, result.only_b) == (only_a, only_b)


def test_mcnemar_statistic_on_agrestis_presidential_approval_example():
    """Agresti, An Introduction to Categorical Data Analysis (2nd ed.), §8.1: 1600 people
    rated the President twice; 150 approve -> disapprove, 86 disapprove -> approve.
    z^2 = (86 - 150)^2 / 236 = 17.36, p < 0.001; with the continuity correction
    (|86 - 150| - 1)^2 / 236 = 16.82."""
    result = stats.mcnemar_from_counts(150, 86)
    assert result.statistic == pytest.approx(63**2 / 236)
    assert 16.81 < result.statistic < 16.83
    assert result.p_value < 0.001


def test_mcnemar_counts_the_discordant_images_only():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    pred_a = np.array([0, 1, 2, 0, 0, 5, 0, 0])  # right on 0, 1, 2, 5
    pred_b = np.array([0, 1, 0, 3, 4, 0, 6, 0])  # right on 0, 1, 3, 4, 6
    result = stats.mcnemar(pred_a == labels, pred_b == labels)
    assert (result.only_a, result.only_b) == (2, 3)  # a only: 2, 5; b only: 3, 4, 6
    assert result.p_value == pytest.approx(1.0)  # 2 of 5: as balanced as 5 can be
    with pytest.raises(ValueError, match="boolean"):
        stats.mcnemar(pred_a, pred_b)
    with pytest.raises(ValueError, match="same length"):
        stats.mcnemar(pred_a == labels, (pred_b == labels)[:4])


def test_pooled_mcnemar_sums_the_discordant_counts():
    pooled = stats.pooled_mcnemar(
        [stats.mcnemar_from_counts(1, 3), stats.mcnemar_from_counts(0, 3)]
    )
    assert (pooled.only_a, pooled.only_b) == (1, 6)
    assert pooled.p_value == pytest.approx(2 * (1 + 7) / 2**7)
    with pytest.raises(ValueError, match="at least one"):
        stats.pooled_mcnemar([])


def test_compare_pairs_seeds_and_reports_json_types():
    rng = np.random.default_rng(0)
    n = 400
    correct_a = [rng.random(n) < 0.9 for _ in range(3)]
    correct_b = [a | (rng.random(n) < 0.3) for a in correct_a]  # b right wherever a is
    result = stats.compare("scratch", correct_a, "distilled", correct_b)
    expected = [np.mean(b) - np.mean(a) for a, b in zip(correct_a, correct_b)]
    assert result.differences == pytest.approx(expected)
    assert result.mean.mean == pytest.approx(np.mean(expected))
    assert all(
        m.only_a == 0 and m.only_b == int(np.sum(b & ~a))
        for m, a, b in zip(result.mcnemar, correct_a, correct_b)
    )
    assert result.pooled.only_b == sum(m.only_b for m in result.mcnemar)
    report = result.to_dict()
    assert report["a"] == "scratch" and report["b"] == "distilled"
    assert report["ci95_low"] < report["mean_difference"] < report["ci95_high"]
    assert len(report["mcnemar_per_seed"]) == 3
    # One seed: the interval and the t-test are undefined, and JSON gets null, not NaN.
    single = stats.compare("scratch", correct_a[:1], "distilled", correct_b[:1]).to_dict()
    assert single["ci95_low"] is None and single["t_p_value"] is None


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: stats.mean_ci([]), "non-empty"),
        (lambda: stats.mean_ci([1.0, float("nan")]), "finite"),
        (lambda: stats.mean_ci([1.0, 2.0], confidence=95), "confidence"),
        (lambda: stats.paired_t_test([1.0, 2.0], [1.0]), "pair up"),
        (lambda: stats.mcnemar_from_counts(-1, 2), "only_a"),
        (lambda: stats.compare("a", [], "b", []), "one entry per seed"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


def per_seed_outcomes(right_a, right_b, n=2000):
    """Boolean vectors of one seed: model A right on ``right_a`` of ``n`` images, model B on
    those and ``right_b - right_a`` more."""
    a = np.arange(n) < right_a
    b = np.arange(n) < right_b
    return a, b


def test_equal_gains_of_every_seed_give_no_test_despite_rounding():
    """Two seeds that both gain exactly +30 of 2,000 images: the float differences
    (1630 - 1600) / 2000 and (1230 - 1200) / 2000 differ in the last bits only, which is no
    spread at all. The t-test and interval must be undefined, not t = 1e14."""
    seeds = [per_seed_outcomes(1600, 1630), per_seed_outcomes(1200, 1230)]
    accuracies = [(np.mean(a), np.mean(b)) for a, b in seeds]
    differences = [b - a for a, b in accuracies]
    assert differences[0] != differences[1]  # the rounding noise this test is about
    assert differences == pytest.approx([0.015, 0.015], abs=1e-15)
    result = stats.compare("scratch", [a for a, _ in seeds], "distilled", [b for _, b in seeds])
    assert result.mean.mean == pytest.approx(0.015)
    assert math.isnan(result.mean.low) and math.isnan(result.mean.high)
    assert math.isnan(result.t_test.statistic) and math.isnan(result.t_test.p_value)
    assert math.isnan(stats.paired_t_test(*zip(*accuracies)).statistic)
    from kdlib.experiment.conclusions import verdict

    words = verdict(result)
    assert "better" not in words and "every seed gave the same difference" in words


def test_differences_that_really_vary_still_get_a_test():
    """The tolerance is relative to the size of the differences: a spread of 1e-6 around a
    mean of 1e-3 is a spread, and gets the t statistic of the formula."""
    d = np.array([1e-3, 1e-3 + 1e-6])
    ci = stats.mean_ci(d)
    half = 12.706204736174707 * np.std(d, ddof=1) / np.sqrt(2)  # t_{0.975, 1}
    assert (ci.low, ci.high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    t = stats.paired_t_test([0.0, 0.0], d).statistic
    assert t == pytest.approx(d.mean() / (np.std(d, ddof=1) / np.sqrt(2)), rel=1e-9)


def test_compare_refuses_an_empty_seed_without_numpy_warnings():
    import warnings

    full = np.ones(5, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning ("Mean of empty slice") fails
        with pytest.raises(ValueError, match=r"correct_a\[1\]") as info:
            stats.compare("a", [full, np.array([], bool)], "b", [full, np.array([], bool)])
    assert "values" not in str(info.value) and "nan" not in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: stats.mean_ci([0.5]),
        lambda: stats.paired_t_test([0.5], [0.6]),
        lambda: stats.compare("a", [np.ones(3, bool)], "b", [np.ones(3, bool)]),
    ],
)
def test_every_to_dict_is_strict_json_with_null_for_nan(make):
    import json

    report = make().to_dict()
    text = json.dumps(report, allow_nan=False)  # raises on NaN or inf
    assert "null" in text
