"""kdlib.experiment.plots, checked against the numbers each plot was given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from reference import np_softmax

from kdlib.experiment import plots as experiment_plots


def test_training_curves_draw_training_and_validation_per_model():
    histories = {
        "teacher": {"accuracy": [0.9, 0.95], "val_accuracy": [0.92, 0.96]},
        "scratch": {"accuracy": [0.8, 0.85, 0.87], "val_accuracy": [0.81, 0.84, 0.86]},
    }
    ax = experiment_plots.plot_training_curves(histories)
    assert len(ax.lines) == 4
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.92, 0.96])
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [0.8, 0.85, 0.87])
    with pytest.raises(ValueError, match="'loss'"):
        experiment_plots.plot_training_curves(histories, metric="loss")


def test_soft_target_bars_are_the_softmax_at_both_temperatures():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 10)).astype("float32") * 5
    images = rng.random((2, 28, 28))
    fig = experiment_plots.plot_soft_targets(images, logits, temperature=4.0, labels=[3, 8])
    assert len(fig.axes) == 6
    for row in range(2):
        for col, T in ((1, 1.0), (2, 4.0)):
            heights = [bar.get_height() for bar in fig.axes[3 * row + col].patches]
            np.testing.assert_allclose(heights, np_softmax(logits[row], T), rtol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        experiment_plots.plot_soft_targets(images, logits, temperature=0.0)
    with pytest.raises(ValueError, match="same n"):
        experiment_plots.plot_soft_targets(images[:1], logits, temperature=2.0)


def test_digit_grid_captions_every_prediction():
    images = np.zeros((3, 28, 28))
    fig = experiment_plots.plot_digits(
        images, [1, 2, 3], {"scratch": [7, 7, 7], "distilled": [1, 2, 3]}, columns=2
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "label 1\nscratch 7\ndistilled 1" and len(titles) == 3
    empty = experiment_plots.plot_digits(np.zeros((0, 28, 28)), [], {"scratch": []})
    assert "no digits" in empty.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="same length"):
        experiment_plots.plot_digits(images, [1, 2], {"scratch": [7, 7, 7]})


def test_comparison_draws_every_seed_and_the_mean_and_says_where_the_axis_starts():
    fig = experiment_plots.plot_comparison(
        ["teacher", "scratch", "distilled"],
        [0.99, [0.97, 0.972], [0.978, 0.976]],
        params=[421_642, 39_760, 39_760],
    )
    accuracy_ax, size_ax = fig.axes
    # Per model: the seeds' dots, then the mean as a line (in percent).
    lines = accuracy_ax.lines
    np.testing.assert_allclose(lines[0].get_ydata(), [99.0])
    np.testing.assert_allclose(lines[2].get_ydata(), [97.0, 97.2])
    np.testing.assert_allclose(lines[3].get_ydata(), [97.1, 97.1])
    np.testing.assert_allclose(lines[5].get_ydata(), [97.7, 97.7])
    low = accuracy_ax.get_ylim()[0]
    assert 0 < low < 97.0 and f"starts at {low:.3g} %" in accuracy_ax.get_ylabel()
    assert [b.get_height() for b in size_ax.patches] == [421_642, 39_760, 39_760]
    assert accuracy_ax.get_title() == "test accuracy: each seed (dot), mean (line)"
    with pytest.raises(ValueError, match="fractions"):
        experiment_plots.plot_comparison(["a"], [97.0])
    with pytest.raises(ValueError, match="one entry per model"):
        experiment_plots.plot_comparison(["a", "b"], [0.9])


def test_training_curves_mark_the_kept_epoch_and_label_a_cut_axis():
    histories = {"scratch": {"accuracy": [0.65, 0.8, 0.9], "val_accuracy": [0.7, 0.85, 0.8]}}
    ax = experiment_plots.plot_training_curves(histories, best_epochs={"scratch": 2})
    star = ax.lines[2]
    assert star.get_marker() == "*"
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [0.85]
    # The fast-mode accuracies (0.65-0.90) are inside the axis, which says where it starts.
    low, high = ax.get_ylim()
    assert low <= 0.65 and high >= 0.9 and "axis cut" in ax.get_ylabel()


def test_paired_differences_draw_the_seeds_and_the_interval_only_with_two_or_more():
    from kdlib import stats

    rng = np.random.default_rng(1)
    a = [rng.random(200) < 0.9 for _ in range(3)]
    b = [x | (rng.random(200) < 0.2) for x in a]
    comparison = stats.compare("scratch", a, "distilled", b)
    ax = experiment_plots.plot_paired_differences([comparison])
    dots = [line for line in ax.lines if line.get_marker() == "o"][0]
    np.testing.assert_allclose(dots.get_ydata(), 100 * np.array(comparison.differences))
    bar = ax.containers[0]  # the errorbar: mean with its 95 % CI
    np.testing.assert_allclose(
        np.asarray(bar.lines[0].get_ydata(), float), [100 * comparison.mean.mean]
    )
    segment = bar.lines[2][0].get_segments()[0]
    np.testing.assert_allclose(
        sorted(segment[:, 1]), [100 * comparison.mean.low, 100 * comparison.mean.high]
    )
    single = stats.compare("scratch", a[:1], "distilled", b[:1])
    ax = experiment_plots.plot_paired_differences([single], ax=plt.subplots()[1])
    assert not ax.containers and ax.get_title() == "one seed: no interval"
