"""kdlib.experiment_plots, checked against the numbers each plot was given."""

from __future__ import annotations

import numpy as np
import pytest
from reference import np_softmax

from kdlib import experiment_plots


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


def test_comparison_bars_are_the_accuracies_in_percent_and_the_parameters():
    fig = experiment_plots.plot_comparison(
        ["teacher", "scratch", "distilled"],
        [0.99, 0.97, 0.978],
        stds=[0.0, 0.001, 0.0011],
        params=[421_642, 39_760, 39_760],
    )
    accuracy_ax, size_ax = fig.axes
    np.testing.assert_allclose([b.get_height() for b in accuracy_ax.patches], [99, 97, 97.8])
    assert [b.get_height() for b in size_ax.patches] == [421_642, 39_760, 39_760]
    with pytest.raises(ValueError, match="fractions"):
        experiment_plots.plot_comparison(["a"], [97.0])
    with pytest.raises(ValueError, match="one entry per model"):
        experiment_plots.plot_comparison(["a", "b"], [0.9])
