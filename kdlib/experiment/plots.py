"""Plots of the MNIST experiment (notebook 04 and ``kdlib distill --plot``).

The pictures of the data are here: the teacher's soft targets and captioned digits. The plots
of the results (training curves with the kept epochs, paired differences with their
confidence interval, the per-seed comparison) are in :mod:`kdlib.experiment.plots` and importable
from here. Each function returns the Axes or Figure it drew on. Concept plots are in
:mod:`kdlib.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from keras import ops
from matplotlib.axes import Axes

from kdlib import losses, validate
from kdlib.plotting import bar_probabilities

__all__ = [
    "plot_comparison",
    "plot_digits",
    "plot_paired_differences",
    "plot_soft_targets",
    "plot_training_curves",
]


# ------------------ Plots of the experiment's results (notebook 04 and ``kdlib distill --plot``)
MODEL_COLORS = {"teacher": "C0", "scratch": "C1", "distilled": "C2", "smoothed": "C4"}


def _note_cut_axis(ax: Axes, unit: str = "") -> None:
    """Say in the y label where the axis starts when it does not start at 0."""
    low = ax.get_ylim()[0]
    if low > 0:
        ax.set_ylabel(f"{ax.get_ylabel()}\n(axis cut: starts at {low:.3g}{unit}, not 0)")


def plot_training_curves(
    histories: dict[str, dict[str, Sequence[float]]],
    metric: str = "accuracy",
    ax: Axes | None = None,
    best_epochs: dict[str, int] | None = None,
) -> Axes:
    """Training (dashed) and validation (solid) ``metric`` per epoch, one colour per model.

    Parameters
    ----------
    histories : dict
        ``{model name: keras History.history}``, e.g. ``result.histories`` of
        :func:`kdlib.experiment.run_experiment`.
    metric : str
        A key of every history; ``"val_" + metric`` is drawn too when present.
    best_epochs : dict, optional
        ``{model name: epoch (1-based)}``: the epoch each model kept, marked with a star on
        its validation curve.

    Returns
    -------
    The Axes; for each model (in the order given) one dashed line (training), then one
    solid line (validation) if the history has it, then the star if its best epoch is
    given; x = epochs 1, 2, ... The y-axis fits the data; when it does not start at 0 the
    y label says so.
    """
    if not histories:
        raise ValueError("histories is empty; pass e.g. result.histories from run_experiment.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (name, history) in enumerate(histories.items()):
        if metric not in history:
            raise ValueError(
                f"the history of {name!r} has no {metric!r}; it has {sorted(history)}. "
                "Pass a metric every model was compiled with, e.g. metric='accuracy'."
            )
        color = MODEL_COLORS.get(name, f"C{i}")
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], ls="--", color=color, label=f"{name} (training)")
        validation = history.get(f"val_{metric}")
        if validation is not None:
            ax.plot(
                epochs,
                validation,
                ls="-",
                marker="o",
                ms=3,
                color=color,
                label=f"{name} (validation)",
            )
            best = (best_epochs or {}).get(name)
            if best is not None:
                ax.plot(
                    [best],
                    [validation[best - 1]],
                    marker="*",
                    ms=14,
                    color=color,
                    markeredgecolor="black",
                    ls="none",
                )
    ax.set_xlabel("epoch" + (" (★ = epoch kept, best on validation)" if best_epochs else ""))
    ax.set_ylabel(metric)
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3)
    _note_cut_axis(ax)
    return ax


def plot_paired_differences(comparisons: Sequence[Any], ax: Axes | None = None) -> Axes:
    """Per-seed differences of test accuracy (dots) and their mean with a 95 % CI.

    Parameters
    ----------
    comparisons : sequence of :class:`kdlib.stats.PairedComparison`
        E.g. ``result.comparisons.values()``; each becomes one column, "b − a".

    Returns
    -------
    The Axes: for each comparison one set of dots (the per-seed differences, in points),
    then its mean with a 95 % CI error bar when there are at least two seeds (one seed
    has no interval, so none is drawn); a line at 0 (no difference).
    """
    comparisons = list(comparisons)
    if not comparisons:
        raise ValueError("comparisons is empty; pass e.g. result.comparisons.values().")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.axhline(0.0, color="grey", lw=1)
    for i, c in enumerate(comparisons):
        d = 100 * np.asarray(c.differences, dtype=np.float64)
        offsets = np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else np.zeros(1)
        ax.plot(i + offsets, d, "o", color=f"C{i}", alpha=0.7, ls="none")
        if len(d) > 1 and c.mean.high > c.mean.low:  # no zero-width interval
            mean, low, high = (100 * c.mean.mean, 100 * c.mean.low, 100 * c.mean.high)
            ax.errorbar(
                [i + 0.3],
                [mean],
                yerr=[[mean - low], [high - mean]],
                fmt="D",
                color="black",
                capsize=5,
            )
    ax.set_xticks(range(len(comparisons)), [f"{c.b}\n− {c.a}" for c in comparisons])
    ax.set_xlim(-0.5, len(comparisons) - 0.3)
    ax.set_ylabel("difference of test accuracy\n(points)")
    n = len(comparisons[0].differences)
    ax.set_title(
        f"per seed (dots), mean and 95 % CI (diamond), {n} seeds"
        if n > 1
        else "one seed: no interval"
    )
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_comparison(
    names: Sequence[str],
    accuracies: Sequence[Any],
    params: Sequence[int] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Test accuracy of every seed (dots) with the mean (bar), and parameters if given.

    Parameters
    ----------
    names : sequence of str
        Model names, e.g. ``("teacher", "scratch", "smoothed", "distilled")``.
    accuracies : sequence
        Per model, a test accuracy or a sequence of them (one per seed), as fractions in
        [0, 1] (drawn in percent).
    params : sequence of int, optional
        Parameter counts, drawn in a second panel on a log scale.

    Returns
    -------
    The Figure; ``fig.axes[0]`` holds, per model, the seeds' accuracies as dots then the
    mean as a short horizontal line (in percent); its y-axis fits the data, and the y label
    says where it starts. ``fig.axes[1]`` holds the parameter bars when ``params`` is given.
    """
    per_model = [np.atleast_1d(np.asarray(a, dtype=np.float64)) * 100 for a in accuracies]
    if len(names) != len(per_model) or (params is not None and len(params) != len(per_model)):
        raise ValueError(
            "names, accuracies and params must have one entry per model, got lengths "
            f"{len(names)}, {len(per_model)}, {None if params is None else len(params)}."
        )
    if any(a.size == 0 or not np.all((a >= 0) & (a <= 100)) for a in per_model):
        raise ValueError(f"accuracies must be fractions in [0, 1], got {list(accuracies)!r}.")
    panels = 1 if params is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    colors = [MODEL_COLORS.get(n, f"C{i}") for i, n in enumerate(names)]
    ax = axes[0, 0]
    for i, (acc, color) in enumerate(zip(per_model, colors)):
        offsets = np.linspace(-0.15, 0.15, acc.size) if acc.size > 1 else np.zeros(1)
        ax.plot(i + offsets, acc, "o", color=color, alpha=0.7, ls="none")
        mean = float(np.mean(acc))
        ax.plot([i - 0.3, i + 0.3], [mean, mean], color=color, lw=3)
        ax.annotate(
            f"{mean:.2f}",
            (i, float(np.max(acc))),
            ha="center",
            va="bottom",
            fontsize="small",
            xytext=(0, 4),
            textcoords="offset points",
        )
    low = min(float(np.min(a)) for a in per_model)
    high = max(float(np.max(a)) for a in per_model)
    ax.set_ylim(max(0.0, low - 0.5), min(100.0, high + 0.4))
    ax.set_xticks(range(len(names)), list(names))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    seeds = max(a.size for a in per_model)
    ax.set_title(
        "test accuracy: each seed (dot), mean (line)" if seeds > 1 else "test accuracy (one seed)"
    )
    ax.grid(alpha=0.3, axis="y")
    _note_cut_axis(ax, " %")
    if params is not None:
        ax = axes[0, 1]
        ax.bar(list(names), [int(p) for p in params], color=colors)
        ax.set_yscale("log")
        # Room below the smallest bar and above the largest label.
        ax.set_ylim(min(int(p) for p in params) / 10, max(int(p) for p in params) * 4)
        ax.set_ylabel("parameters (log scale)")
        ax.set_title("size")
        for i, p in enumerate(params):
            ax.annotate(
                f"{int(p):,}",
                (i, int(p)),
                ha="center",
                va="bottom",
                fontsize="small",
                xytext=(0, 3),
                textcoords="offset points",
            )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_soft_targets(
    images: Any,
    teacher_logits: Any,
    temperature: float,
    labels: Any = None,
) -> plt.Figure:
    r"""Digits and the teacher's probabilities :math:`\mathrm{softmax}(z/T)` at T = 1 and T.

    One row per image: the image, the probabilities at T = 1 (nearly one-hot for a good
    teacher) and at ``temperature`` (the "dark knowledge": which wrong classes look alike).

    Parameters
    ----------
    images : array-like, shape (n, 28, 28)
    teacher_logits : array-like, shape (n, num_classes)
    temperature : float
        The distillation temperature (> 0).
    labels : array-like of int, shape (n,), optional
        True labels, shown in the row titles.

    Returns
    -------
    The Figure, three panels per row.
    """
    temperature = validate.temperature(temperature)
    images = np.asarray(images)
    z = np.asarray(teacher_logits, dtype=np.float32)
    if z.ndim != 2 or images.ndim != 3 or len(images) != len(z) or len(z) == 0:
        raise ValueError(
            f"images must be (n, height, width) and teacher_logits (n, num_classes) for the "
            f"same n >= 1, got shapes {images.shape} and {z.shape}."
        )
    rows = len(z)
    fig, axes = plt.subplots(
        rows,
        3,
        figsize=(8, 1.6 * rows),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 3, 3]},
    )
    classes = [str(i) for i in range(z.shape[1])]
    for row in range(rows):
        axes[row, 0].imshow(images[row], cmap="gray_r")
        axes[row, 0].set_axis_off()
        if labels is not None:
            axes[row, 0].set_title(f"label {int(np.asarray(labels)[row])}", fontsize="small")
        for col, t in ((1, 1.0), (2, temperature)):
            p = ops.convert_to_numpy(losses.softmax_with_temperature(z[row], t))
            bar_probabilities(p, labels=classes, ax=axes[row, col], color=f"C{col - 1}")
            axes[row, col].set_ylabel("")
            if row == 0:
                axes[row, col].set_title(f"teacher softmax(z / T), T = {t:g}")
    fig.tight_layout()
    return fig


def plot_digits(
    images: Any,
    labels: Any,
    predictions: dict[str, Any],
    max_images: int = 12,
    columns: int = 6,
    title: str | None = None,
) -> plt.Figure:
    """A grid of digits, each captioned with its label and every model's prediction.

    Parameters
    ----------
    images : array-like, shape (n, 28, 28)
    labels : array-like of int, shape (n,)
    predictions : dict
        ``{model name: predicted classes, shape (n,)}``, e.g. ``{"scratch": ...,
        "distilled": ...}``.
    max_images : int
        At most this many digits are drawn (the first ones).

    Returns
    -------
    The Figure.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    count = min(len(images), max_images)
    if len(labels) != len(images) or any(len(p) != len(images) for p in predictions.values()):
        raise ValueError(
            f"images, labels and every predictions entry must have the same length, got "
            f"{len(images)}, {len(labels)} and "
            f"{ {k: len(v) for k, v in predictions.items()} }."
        )
    if count == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no digits to show", ha="center", va="center")
        ax.set_axis_off()
        return fig
    columns = min(validate.positive_int(columns, "columns", example=6), count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= count:
            continue
        ax.imshow(images[i], cmap="gray_r")
        caption = [f"label {int(labels[i])}"]
        caption += [f"{name} {int(np.asarray(p)[i])}" for name, p in predictions.items()]
        ax.set_title("\n".join(caption), fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
