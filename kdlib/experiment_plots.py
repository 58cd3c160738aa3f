"""Plots of the MNIST experiment (notebook 04 and ``kdlib distill --plot``).

The pictures of the data are here: the teacher's soft targets and captioned digits. The plots
of the results (training curves with the kept epochs, paired differences with their
confidence interval, the per-seed comparison) are in :mod:`kdlib.result_plots` and importable
from here. Each function returns the Axes or Figure it drew on. Concept plots are in
:mod:`kdlib.plotting`.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from keras import ops

from kdlib import losses, validate
from kdlib.plotting import bar_probabilities

# The plots of results live in kdlib.result_plots; notebooks import them from here. The `as`
# keeps the names that are not in __all__ (MODEL_COLORS, plot_paired_differences) exported.
from kdlib.result_plots import MODEL_COLORS as MODEL_COLORS
from kdlib.result_plots import plot_comparison, plot_training_curves
from kdlib.result_plots import plot_paired_differences as plot_paired_differences

__all__ = [
    "plot_training_curves",
    "plot_soft_targets",
    "plot_digits",
    "plot_comparison",
]


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
