"""An ipywidgets explorer over ``kdlib sweep`` results: pick T and alpha, see the accuracy of
that cell and what the teacher's soft targets look like at that T.

Like :mod:`kdlib.widgets`, the figure is a matplotlib PNG in an ``ipywidgets.Image``, so it
runs headless (tests set ``.value`` on the controls and read the attributes).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from keras import ops
from matplotlib.figure import Figure

from kdlib import losses
from kdlib.sweep.plots import plot_sweep_heatmap
from kdlib.widgets import _image, _png, _StaticPicture

__all__ = [
    "SweepExplorer",
]


class SweepExplorer(_StaticPicture, widgets.VBox):
    """Dropdowns over the sweep's temperatures and alphas, and a slider over example images.

    Parameters
    ----------
    sweep : dict
        A ``kdlib sweep --json`` payload (:func:`kdlib.sweep.load_json`).
    teacher_logits : array-like, shape (num_examples, num_classes)
        The teacher's logits for a few images, to show their soft targets at the chosen T.
    labels : sequence of int, optional
        The true class of each of those images (shown in the title).

    Attributes
    ----------
    temperature, alpha : ipywidgets.Dropdown
        The cell; set ``.value`` to move (what choosing in the menu does).
    example : ipywidgets.IntSlider
        Which image's soft targets are drawn.
    cell : dict
        Mean and std over seeds of the chosen cell's validation and test accuracy.
    probabilities : numpy.ndarray
        ``softmax(teacher_logits[example] / T)``, the bars drawn.
    summary : ipywidgets.HTML, figure : Figure, image : ipywidgets.Image
    """

    display_width_px = 900  # two panels side by side: wider than the other explorers

    def __init__(
        self, sweep: dict[str, Any], teacher_logits: Any, labels: Sequence[int] | None = None
    ) -> None:
        logits = np.asarray(teacher_logits, dtype=np.float64)
        if logits.ndim != 2 or len(logits) == 0 or not np.all(np.isfinite(logits)):
            raise ValueError(
                "teacher_logits must be a finite 2-D array (examples, classes), got shape "
                f"{logits.shape}; e.g. teacher.predict(x_val[:8])."
            )
        if labels is not None and len(labels) != len(logits):
            raise ValueError(f"labels has {len(labels)} entries for {len(logits)} examples.")
        self.sweep, self.logits = sweep, logits
        self.labels = None if labels is None else [int(c) for c in labels]
        self.temperature = widgets.Dropdown(options=list(sweep["temperatures"]), description="T")
        self.alpha = widgets.Dropdown(options=list(sweep["alphas"]), description="alpha")
        self.example = widgets.IntSlider(0, 0, len(logits) - 1, description="image")
        self.summary = widgets.HTML()
        self.image = _image(self.display_width_px)
        self.figure = Figure(figsize=(9.5, 3.6), layout="constrained")
        self.cell: dict[str, float] = {}
        self.probabilities = np.zeros(logits.shape[1])
        controls = widgets.HBox([self.temperature, self.alpha, self.example])
        super().__init__(children=[controls, self.summary, self.image])
        for control in (self.temperature, self.alpha, self.example):
            control.observe(lambda change: self._update(), names="value")
        self._update()

    def _stats(self, key: str, rows: list[dict[str, Any]]) -> tuple[float, float]:
        values = np.array([r[key] for r in rows])
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def _update(self) -> None:
        t, a = float(self.temperature.value), float(self.alpha.value)
        rows = [r for r in self.sweep["records"] if (r["temperature"], r["alpha"]) == (t, a)]
        val, val_std = self._stats("val_accuracy", rows)
        test, test_std = self._stats("test_accuracy", rows)
        scratch, scratch_std = self._stats("val_accuracy", self.sweep["scratch"])
        self.cell = {"val_mean": val, "val_std": val_std, "test_mean": test, "test_std": test_std}
        index = int(self.example.value)
        self.probabilities = ops.convert_to_numpy(
            losses.softmax_with_temperature(self.logits[index], t)
        )
        selected = self.sweep["selected"]
        self.summary.value = html.escape(
            f"T = {t:g}, alpha = {a:g}: validation {100 * val:.2f} ± {100 * val_std:.2f} % "
            f"(scratch {100 * scratch:.2f} ± {100 * scratch_std:.2f}); test "
            f"{100 * test:.2f} ± {100 * test_std:.2f} % (mean ± std over {len(rows)} seeds). "
            f"Validation selects T = {selected['temperature']:g}, "
            f"alpha = {selected['alpha']:g}."
        )
        self.figure.clear()
        heat, bars = self.figure.subplots(1, 2, width_ratios=[1.1, 1])
        marked = {**self.sweep, "selected": {"temperature": t, "alpha": a}}
        plot_sweep_heatmap(marked, ax=heat, title="validation accuracy % (outlined: shown)")
        bars.bar(range(len(self.probabilities)), self.probabilities, color="tab:orange")
        bars.set_xticks(range(len(self.probabilities)))
        bars.set_ylim(0, 1)
        truth = "" if self.labels is None else f" (a {self.labels[index]})"
        bars.set_title(f"teacher's soft targets at T = {t:g}, image {index}{truth}")
        self.image.value = _png(self.figure, self.display_width_px)
