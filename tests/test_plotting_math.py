"""The plotting helpers of notebooks 01-03: the plotted numbers against NumPy, no display."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from reference import np_entropy, np_softmax
from reference import np_kl as kl

from kdlib import plotting

LOGITS = np.array([-2.1, 3.0, 1.5, 0.2, -1.0, -0.6, -3.0, 9.0, -0.4, 4.1])


def softmax_rows(z, temperatures):
    """softmax(z / T) for each T: one row per temperature."""
    return np_softmax(np.asarray(z)[None, :] / np.asarray(temperatures)[:, None])


def test_bar_probabilities_draws_one_bar_per_class():
    ax = plotting.bar_probabilities([0.2, 0.3, 0.5], labels=["a", "b", "c"], title="x")
    assert [b.get_height() for b in ax.patches] == [0.2, 0.3, 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_title() == "x"


@pytest.mark.parametrize(
    ("probabilities", "labels", "match"),
    [([0.5, -0.5], None, ">= 0"), ([[0.5, 0.5]], None, "1-D"), ([0.5, 0.5], ["a"], "label")],
)
def test_bar_probabilities_rejects_bad_input(probabilities, labels, match):
    with pytest.raises(ValueError, match=match):
        plotting.bar_probabilities(probabilities, labels)


def test_softmax_vs_temperature_lines_match_numpy():
    temperatures = np.array([0.1, 0.5, 1.0, 3.0, 30.0])
    ax = plotting.plot_softmax_vs_temperature(LOGITS, temperatures)
    expected = softmax_rows(LOGITS, temperatures)
    assert len(ax.lines) == LOGITS.size + 1
    for i in range(LOGITS.size):
        np.testing.assert_allclose(ax.lines[i].get_xdata(), temperatures)
        np.testing.assert_allclose(ax.lines[i].get_ydata(), expected[:, i], atol=1e-12)
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), 0.1)
    assert ax.get_xscale() == "log"


def test_entropy_vs_temperature_matches_numpy_and_its_limits():
    temperatures = np.array([0.01, 0.3, 1.0, 4.0, 1e4])
    ax = plotting.plot_entropy_vs_temperature(LOGITS, temperatures)
    expected = np_entropy(softmax_rows(LOGITS, temperatures))
    entropy = ax.lines[0].get_ydata()
    np.testing.assert_allclose(entropy, expected, atol=1e-12)
    assert np.all(np.diff(entropy) > 0)
    assert entropy[0] == pytest.approx(0.0, abs=1e-12)
    assert entropy[-1] == pytest.approx(math.log(10), abs=1e-6)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), math.log(10))


def test_default_temperature_grid():
    ax = plotting.plot_entropy_vs_temperature([1.0, 0.0])
    x = ax.lines[0].get_xdata()
    assert len(x) == 200 and x[0] == pytest.approx(0.05) and x[-1] == pytest.approx(100.0)


def test_kl_asymmetry_matches_the_two_class_formula():
    ax = plotting.plot_kl_asymmetry(q=(0.2, 0.8), num=9)
    a = ax.lines[0].get_xdata()
    np.testing.assert_allclose(a, np.linspace(0.1, 0.9, 9))
    q = np.array([0.2, 0.8])
    forward = [kl(np.array([x, 1 - x]), q) for x in a]
    reverse = [kl(q, np.array([x, 1 - x])) for x in a]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), forward, rtol=1e-12)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), reverse, rtol=1e-12)
    assert ax.lines[0].get_ydata()[1] == pytest.approx(0.0, abs=1e-15)  # a = 0.2 = q[0]


@pytest.mark.parametrize("q", [(0.5, 0.6), (0.0, 1.0), (0.2, 0.3, 0.5)])
def test_kl_asymmetry_rejects_bad_q(q):
    with pytest.raises(ValueError, match="two positive probabilities"):
        plotting.plot_kl_asymmetry(q=q)


def test_gradient_norm_vs_temperature_against_finite_differences():
    t = np.array([5.0, 1.5, -1.0, 0.2])
    s = np.array([2.0, 2.5, -0.5, 0.0])
    temperatures = np.array([1.0, 2.0, 5.0, 20.0])
    ax = plotting.plot_gradient_norm_vs_temperature(t, s, temperatures)

    def kl_at(student, temperature):
        p = softmax_rows(t, [temperature])[0]
        q = softmax_rows(student, [temperature])[0]
        return kl(p, q)

    h = 1e-6
    for i, temperature in enumerate(temperatures):
        grad = np.array(
            [
                (kl_at(s + h * e, temperature) - kl_at(s - h * e, temperature)) / (2 * h)
                for e in np.eye(s.size)
            ]
        )
        norm = np.linalg.norm(grad)
        assert ax.lines[0].get_ydata()[i] == pytest.approx(norm, rel=1e-6)
        assert ax.lines[1].get_ydata()[i] == pytest.approx(norm * temperature**2, rel=1e-6)
    centred = (s - s.mean()) - (t - t.mean())
    np.testing.assert_allclose(ax.lines[2].get_ydata(), np.linalg.norm(centred) / s.size)


def test_gradient_norm_with_t_squared_tends_to_the_logit_matching_limit():
    t = np.array([5.0, 1.5, -1.0, 0.2])
    s = np.array([2.0, 2.5, -0.5, 0.0])
    ax = plotting.plot_gradient_norm_vs_temperature(t, s, [1e3, 1e4])
    with_t2, limit = ax.lines[1].get_ydata(), ax.lines[2].get_ydata()
    assert with_t2[-1] == pytest.approx(limit[-1], rel=1e-3)
    without = ax.lines[0].get_ydata()
    assert without[1] / without[0] == pytest.approx(1e-2, rel=1e-2)  # ~ 1 / T^2


def test_gradient_norm_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_gradient_norm_vs_temperature([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="temperatures must be finite numbers > 0"):
        plotting.plot_gradient_norm_vs_temperature([1.0, 2.0], [2.0, 1.0], [1.0, 0.0])


def test_helpers_draw_on_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_entropy_vs_temperature([1.0, 0.0], ax=axes[1]) is axes[1]
    assert plotting.bar_probabilities([1.0, 0.0], ax=axes[0]) is axes[0]
