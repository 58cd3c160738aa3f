"""Plots of the experiment's results (notebook 04 and ``kdlib distill --plot``).

Training curves (with the kept epochs), paired differences with their confidence interval and
the per-seed comparison of test accuracy. Each function returns the Axes or Figure it drew on;
a y-axis that does not start at 0 says so in its label. They need only Matplotlib and NumPy.
The public names are importable from :mod:`kdlib.experiment_plots`, with the pictures of the
data (digits, soft targets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

__all__ = [
    "MODEL_COLORS",
    "plot_training_curves",
    "plot_paired_differences",
    "plot_comparison",
]

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
