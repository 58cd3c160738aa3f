"""Plots of ``kdlib sweep`` results (the JSON dict of :meth:`kdlib.sweep.SweepResult.to_json_dict`
or a file loaded with :func:`kdlib.sweep.load_json`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "grid_array",
    "plot_sweep_heatmap",
]


def grid_array(sweep: dict[str, Any], key: str = "val_accuracy") -> np.ndarray:
    """Mean of ``key`` over seeds as an array of shape (temperatures, alphas)."""
    temperatures, alphas = sweep["temperatures"], sweep["alphas"]
    table = np.full((len(temperatures), len(alphas)), np.nan)
    for i, t in enumerate(temperatures):
        for j, a in enumerate(alphas):
            values = [
                r[key] for r in sweep["records"] if r["temperature"] == t and r["alpha"] == a
            ]
            if values:
                table[i, j] = float(np.mean(values))
    return table


def plot_sweep_heatmap(
    sweep: dict[str, Any],
    key: str = "val_accuracy",
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Heatmap of mean ``key`` (percent) over T (rows) and alpha (columns).

    The selected cell (best mean validation accuracy) is outlined; the colour bar is centred
    on the scratch baseline's mean, so cells better than scratch are red and worse are blue.
    """
    table = 100 * grid_array(sweep, key)
    baseline = 100 * float(np.mean([s[key] for s in sweep["scratch"]]))
    if ax is None:
        fig = Figure(figsize=(5.2, 3.8))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    spread = max(float(np.nanmax(np.abs(table - baseline))), 1e-3)
    image = ax.imshow(
        table, cmap="RdBu_r", vmin=baseline - spread, vmax=baseline + spread, aspect="auto"
    )
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            strong = abs(table[i, j] - baseline) > 0.6 * spread  # dark cell: white text
            ax.text(
                j,
                i,
                f"{table[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if strong else "black",
            )
    temperatures, alphas = sweep["temperatures"], sweep["alphas"]
    selected = sweep["selected"]
    i, j = temperatures.index(selected["temperature"]), alphas.index(selected["alpha"])
    ax.add_patch(_outline(j, i))
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    ax.set_xlabel("alpha (weight of the hard labels)")
    ax.set_ylabel("temperature T")
    label = key.replace("_", " ").replace("val ", "validation ")
    ax.set_title(title or f"{label} %, mean of {len(sweep['seeds'])} seeds")
    fig.colorbar(image, ax=ax, label=f"{label} % (centre: scratch, {baseline:.2f})")
    return fig


def _outline(x: float, y: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5)
