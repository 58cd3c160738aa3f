"""Plots of experiment results (notebook 04 and ``kdlib distill --plot``).

Training curves, the teacher's soft targets, captioned digits and the comparison bars. Each
function returns the Axes or Figure it drew on. Concept plots are in :mod:`kdlib.plotting`.
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

MODEL_COLORS = {"teacher": "C0", "scratch": "C1", "distilled": "C2"}


def plot_training_curves(
    histories: dict[str, dict[str, Sequence[float]]],
    metric: str = "accuracy",
    ax: Axes | None = None,
) -> Axes:
    """Training (dashed) and validation (solid) ``metric`` per epoch, one colour per model.

    Parameters
    ----------
    histories : dict
        ``{model name: keras History.history}``, e.g. ``result.histories`` of
        :func:`kdlib.experiment.run_experiment`.
    metric : str
        A key of every history; ``"val_" + metric`` is drawn too when present.

    Returns
    -------
    The Axes.
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
        if f"val_{metric}" in history:
            ax.plot(
                epochs,
                history[f"val_{metric}"],
                ls="-",
                marker="o",
                ms=3,
                color=color,
                label=f"{name} (validation)",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3)
    return ax


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


def plot_comparison(
    names: Sequence[str],
    accuracies: Sequence[float],
    stds: Sequence[float] | None = None,
    params: Sequence[int] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Bar charts of test accuracy (with ± std error bars) and, if given, parameters.

    Parameters
    ----------
    names : sequence of str
        Model names, e.g. ``("teacher", "scratch", "distilled")``.
    accuracies : sequence of float
        Test accuracies as fractions in [0, 1] (drawn in percent).
    stds : sequence of float, optional
        Standard deviations over seeds (fractions), drawn as error bars.
    params : sequence of int, optional
        Parameter counts, drawn in a second panel on a log scale.

    Returns
    -------
    The Figure: accuracy panel, then the parameter panel if ``params`` is given.
    """
    acc = np.asarray(accuracies, dtype=np.float64) * 100
    err = None if stds is None else np.asarray(stds, dtype=np.float64) * 100
    if (
        len(names) != len(acc)
        or (err is not None and len(err) != len(acc))
        or (params is not None and len(params) != len(acc))
    ):
        raise ValueError(
            "names, accuracies, stds and params must have one entry per model, got lengths "
            f"{len(names)}, {len(acc)}, {None if err is None else len(err)}, "
            f"{None if params is None else len(params)}."
        )
    if not np.all((acc >= 0) & (acc <= 100)):
        raise ValueError(f"accuracies must be fractions in [0, 1], got {list(accuracies)!r}.")
    panels = 1 if params is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), squeeze=False)
    colors = [MODEL_COLORS.get(n, f"C{i}") for i, n in enumerate(names)]
    ax = axes[0, 0]
    ax.bar(list(names), acc, yerr=err, capsize=6, color=colors)
    spread = np.zeros_like(acc) if err is None else err
    low = float(np.min(acc - spread))
    ax.set_ylim(max(0.0, low - 1.0), min(100.0, float(np.max(acc + spread)) + 0.6))
    for i, value in enumerate(acc):
        # Above the error bar, so the two never overlap.
        ax.annotate(
            f"{value:.2f}",
            (i, value + spread[i]),
            ha="center",
            va="bottom",
            fontsize="small",
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy" + (" (mean ± std)" if err is not None else ""))
    if params is not None:
        ax = axes[0, 1]
        ax.bar(list(names), [int(p) for p in params], color=colors)
        ax.set_yscale("log")
        # Room below the smallest bar and above the largest label.
        ax.set_ylim(min(int(p) for p in params) / 10, max(int(p) for p in params) * 4)
        ax.set_ylabel("parameters")
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
