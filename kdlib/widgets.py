r"""Interactive explorers (ipywidgets sliders) for the softmax with temperature and for KL.

Each explorer is an ``ipywidgets.VBox``: display it as the last expression of a cell, in
JupyterLab, Jupyter Notebook or Colab. The plot is a matplotlib figure rendered to PNG into
an ``ipywidgets.Image``, so it needs no interactive matplotlib backend and also runs headless:
setting ``slider.value`` from code does what dragging the slider does.

The PNG is rendered at twice the pixels of the width it is shown at (``DISPLAY_WIDTH_PX``
CSS pixels), so its text stays sharp on ordinary and high-density screens instead of being
stretched. Displaying an explorer also puts a static ``image/png`` of its first state beside
the live view: JupyterLab and Colab show the live widget, while GitHub, nbviewer and an
untrusted notebook, which cannot run widgets, show that picture instead of a text repr.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from keras import ops
from matplotlib.figure import Figure

from kdlib import losses, plotting, validate

__all__ = [
    "kl_explorer",
    "temperature_explorer",
]

DISPLAY_WIDTH_PX = 640  # CSS pixels the plot is shown at (fits a JupyterLab or Colab cell)
_PIXEL_DENSITY = 2  # PNG pixels per CSS pixel: sharp on high-density (2x) screens too
_FIGSIZE = (6.4, 2.8)  # inches; at 100 CSS px per inch the fonts read as in inline plots


def _png(figure: Figure, width_px: int = DISPLAY_WIDTH_PX) -> bytes:
    """The figure as a PNG of _PIXEL_DENSITY times ``width_px`` pixels across."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=width_px * _PIXEL_DENSITY / figure.get_figwidth())
    return buffer.getvalue()


def _image(width_px: int = DISPLAY_WIDTH_PX) -> widgets.Image:
    """An image widget shown at ``width_px`` (narrower cells scale it down, never up)."""
    return widgets.Image(
        format="png",
        layout=widgets.Layout(width=f"{width_px}px", max_width="100%", height="auto"),
    )


class _StaticPicture:
    """Mixin: display the live widget and, beside it, a static PNG of its state at that time.

    A front end shows one representation of an output: JupyterLab and Colab pick the widget
    view; GitHub and nbviewer, which have no widget manager, pick ``image/png``.
    """

    image: widgets.Image
    display_width_px: int = DISPLAY_WIDTH_PX

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        parent = getattr(super(), "_repr_mimebundle_", None)  # ipywidgets 7 displays otherwise
        bundle = parent(**kwargs) if parent is not None else None
        if not bundle:  # a closed widget has nothing to show
            return bundle
        data = dict(bundle)
        data["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        return data, {"image/png": {"width": self.display_width_px}}


class TemperatureExplorer(_StaticPicture, widgets.VBox):
    r"""A slider over T and a live bar chart of :math:`\mathrm{softmax}(z / T)`.

    Parameters
    ----------
    logits : array-like, shape (num_classes,)
        A teacher-like logit vector (at least two finite numbers).
    labels : sequence of str, optional
        One label per class.
    temperature : float
        Initial T.
    min_temperature, max_temperature, step : float
        Range and step of the slider (T > 0).

    Attributes
    ----------
    slider : ipywidgets.FloatSlider
        Set ``slider.value`` to change T (what dragging the slider does).
    probabilities : numpy.ndarray
        The distribution currently shown, from :func:`kdlib.losses.softmax_with_temperature`.
    figure : matplotlib.figure.Figure
        The figure behind the image.
    image : ipywidgets.Image
        The rendered PNG.
    summary : ipywidgets.HTML
        T, the entropy in nats and the ratio of the two largest wrong-class probabilities.
    """

    def __init__(
        self,
        logits: Any,
        labels: Sequence[str] | None = None,
        temperature: float = 1.0,
        min_temperature: float = 0.1,
        max_temperature: float = 20.0,
        step: float = 0.1,
    ) -> None:
        z = validate.logit_vector(logits)
        low = validate.temperature(min_temperature, "min_temperature")
        high = validate.temperature(max_temperature, "max_temperature")
        start = validate.temperature(temperature)
        if not low <= start <= high:
            raise ValueError(
                f"temperature={temperature!r} is outside the slider range "
                f"[{min_temperature!r}, {max_temperature!r}]; pick a start value inside it."
            )
        self.logits = z
        self.labels = validate.class_labels(labels, z.size, of="logits")
        self.slider = widgets.FloatSlider(
            value=start,
            min=low,
            max=high,
            step=step,
            description="T",
            readout_format=".1f",
            continuous_update=True,
            layout=widgets.Layout(width="480px"),
        )
        self.summary = widgets.HTML()
        self.image = _image()
        self.figure = Figure(figsize=_FIGSIZE, layout="constrained")
        ax = self.figure.subplots()
        plotting.bar_probabilities(np.zeros(z.size), self.labels, ax=ax)
        self.probabilities = np.zeros(z.size)
        super().__init__(children=[self.slider, self.summary, self.image])
        self.slider.observe(self._on_change, names="value")
        self._update()

    @property
    def temperature(self) -> float:
        """The current slider value T."""
        return float(self.slider.value)

    def _on_change(self, change: dict[str, Any]) -> None:
        self._update()

    def _update(self) -> None:
        t = self.temperature
        self.probabilities = ops.convert_to_numpy(losses.softmax_with_temperature(self.logits, t))
        ax = self.figure.axes[0]
        for bar, height in zip(ax.patches, self.probabilities, strict=True):
            bar.set_height(height)
        ax.set_title(f"softmax(z / T) at T = {t:.1f}")
        top = int(np.argmax(self.probabilities))
        wrong = np.sort(np.delete(self.probabilities, top))[::-1]
        ratio = wrong[0] / wrong[1] if wrong.size > 1 and wrong[1] > 0 else math.inf
        entropy = float(ops.convert_to_numpy(losses.entropy(self.probabilities)))
        self.summary.value = (
            f"T = {t:.1f} · top class {html.escape(self.labels[top])}: "
            f"{self.probabilities[top]:.4f} · entropy {entropy:.3f} "
            f"nats (max ln {self.logits.size} = {math.log(self.logits.size):.3f}) · "
            f"largest / 2nd-largest wrong class: {ratio:.2f}"
        )
        self.image.value = _png(self.figure)


def temperature_explorer(
    logits: Any, labels: Sequence[str] | None = None, temperature: float = 1.0, **kwargs: Any
) -> TemperatureExplorer:
    """Build a :class:`TemperatureExplorer`; show it as the last expression of a cell."""
    return TemperatureExplorer(logits, labels=labels, temperature=temperature, **kwargs)


class KLExplorer(_StaticPicture, widgets.VBox):
    r"""Sliders for two distributions p and q, with a bar chart and the KL values live.

    Each slider sets an unnormalised weight; p and q are the weights divided by their sum.

    .. math:: \mathrm{KL}(p \,\|\, q) = \sum_i p_i \ln \frac{p_i}{q_i}

    computed with :func:`kdlib.losses.kl_divergence` (nats; bits = nats / ln 2).

    Parameters
    ----------
    p, q : array-like, shape (num_classes,)
        Initial non-negative weights (probabilities, or anything proportional to them).
    labels : sequence of str, optional
        One label per class.

    Attributes
    ----------
    p_sliders, q_sliders : list of ipywidgets.FloatSlider
        One per class; set ``.value`` to change a weight.
    p, q : numpy.ndarray
        The normalised distributions shown (None while all weights of one are 0).
    kl, reverse_kl : float
        KL(p || q) and KL(q || p) in nats (``inf`` where one puts mass where the other has
        none, ``nan`` while a distribution is all zeros).
    summary : ipywidgets.HTML
        The values as text.
    figure, image
        The matplotlib figure and its rendered PNG.
    """

    def __init__(
        self,
        p: Any = (0.2, 0.3, 0.5),
        q: Any = (0.1, 0.4, 0.5),
        labels: Sequence[str] | None = None,
    ) -> None:
        pw = validate.vector(p, "p", min_size=2, non_negative=True, example="(0.2, 0.3, 0.5)")
        qw = validate.vector(q, "q", min_size=2, non_negative=True, example="(0.1, 0.4, 0.5)")
        if pw.shape != qw.shape:
            raise ValueError(
                f"p and q must have the same number of classes, got {pw.size} and {qw.size}."
            )
        self.labels = validate.class_labels(labels, pw.size, of="p")
        top = max(1.0, float(pw.max()), float(qw.max()))

        def sliders(weights: np.ndarray, name: str) -> list[widgets.FloatSlider]:
            return [
                widgets.FloatSlider(
                    value=float(w),
                    min=0.0,
                    max=top,
                    step=0.01,
                    description=f"{name}[{label}]",
                    readout_format=".2f",
                    continuous_update=True,
                )
                for w, label in zip(weights, self.labels, strict=True)
            ]

        self.p_sliders = sliders(pw, "p")
        self.q_sliders = sliders(qw, "q")
        self.summary = widgets.HTML()
        self.image = _image()
        self.figure = Figure(figsize=_FIGSIZE, layout="constrained")
        self.figure.subplots()
        self.p: np.ndarray | None = None
        self.q: np.ndarray | None = None
        self.kl = math.nan
        self.reverse_kl = math.nan
        columns = widgets.HBox([widgets.VBox(self.p_sliders), widgets.VBox(self.q_sliders)])
        super().__init__(children=[columns, self.summary, self.image])
        for slider in self.p_sliders + self.q_sliders:
            slider.observe(self._on_change, names="value")
        self._update()

    def _on_change(self, change: dict[str, Any]) -> None:
        self._update()

    @staticmethod
    def _normalise(sliders: list[widgets.FloatSlider]) -> np.ndarray | None:
        w = np.array([s.value for s in sliders], dtype=np.float64)
        total = w.sum()
        return w / total if total > 0 else None

    def _update(self) -> None:
        self.p = self._normalise(self.p_sliders)
        self.q = self._normalise(self.q_sliders)
        ax = self.figure.axes[0]
        ax.clear()
        n = len(self.labels)
        x = np.arange(n)
        zeros = np.zeros(n)
        ax.bar(x - 0.2, zeros if self.p is None else self.p, width=0.4, label="p", color="C0")
        ax.bar(x + 0.2, zeros if self.q is None else self.q, width=0.4, label="q", color="C1")
        ax.set_xticks(x, self.labels)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", fontsize="small")
        if self.p is None or self.q is None:
            self.kl = self.reverse_kl = math.nan
            empty = "p" if self.p is None else "q"
            self.summary.value = (
                f"All weights of {empty} are 0, so {empty} is not a distribution: "
                "raise one of its sliders."
            )
            ax.set_title("KL undefined")
        else:
            self.kl = float(ops.convert_to_numpy(losses.kl_divergence(self.p, self.q)))
            self.reverse_kl = float(ops.convert_to_numpy(losses.kl_divergence(self.q, self.p)))
            self.summary.value = (
                f"KL(p ‖ q) = {self._format(self.kl)} · KL(q ‖ p) = "
                f"{self._format(self.reverse_kl)}"
            )
            ax.set_title(f"KL(p ‖ q) = {self.kl:.4f} nats")
        self.image.value = _png(self.figure)

    @staticmethod
    def _format(value: float) -> str:
        if math.isinf(value):
            return "∞ (one puts mass where the other has none)"
        return f"{value:.4f} nats = {value / math.log(2):.4f} bits"


def kl_explorer(
    p: Any = (0.2, 0.3, 0.5), q: Any = (0.1, 0.4, 0.5), labels: Sequence[str] | None = None
) -> KLExplorer:
    """Build a :class:`KLExplorer`; show it as the last expression of a cell."""
    return KLExplorer(p, q, labels=labels)
