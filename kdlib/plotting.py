"""Concept plots of notebooks 01-03: softmax and temperature, entropy, KL, the T² gradient.

Every function draws on a ``matplotlib.axes.Axes`` (created if not given) and returns it, so
it works without a display (``MPLBACKEND=Agg``). Plots of the experiment are in
:mod:`kdlib.experiment_plots` (the plots of results in :mod:`kdlib.result_plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from keras import ops
from matplotlib.axes import Axes

from kdlib import losses, validate

__all__ = [
    "bar_probabilities",
    "plot_softmax_vs_temperature",
    "plot_entropy_vs_temperature",
    "plot_kl_asymmetry",
    "plot_gradient_norm_vs_temperature",
]


def _grid(temperatures: Any, low: float, high: float) -> np.ndarray:
    """The temperatures given, or 200 values from ``low`` to ``high`` spaced geometrically."""
    if temperatures is None:
        return np.geomspace(low, high, 200)
    return validate.temperatures(temperatures)


def _softened(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """softmax(logits / T) for every T in ``temperatures``: shape (len(T), num_classes)."""
    scaled = logits[None, :] / temperatures[:, None]
    return ops.convert_to_numpy(losses.softmax_with_temperature(scaled, 1.0))


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def bar_probabilities(
    probabilities: Any,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    color: str = "C0",
) -> Axes:
    """Bar chart of one probability vector, with the y axis fixed to [0, 1].

    Parameters
    ----------
    probabilities : array-like, shape (num_classes,)
        Non-negative numbers that sum to 1 (e.g. ``softmax_with_temperature(z, T)``).
    labels : sequence of str, optional
        One label per class; defaults to ``"0", "1", ...``.
    ax : matplotlib Axes, optional
        Drawn on if given, else a new figure is created.
    title : str, optional
    color : str
        Matplotlib colour of the bars.

    Returns
    -------
    The Axes.
    """
    p = validate.vector(
        probabilities, "probabilities", non_negative=True, example="[0.7, 0.2, 0.1]"
    )
    names = validate.class_labels(labels, p.size, of="probabilities")
    ax = _new_axes(ax, (6, 3))
    ax.bar(names, p, color=color)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    if title:
        ax.set_title(title)
    return ax


def plot_softmax_vs_temperature(
    logits: Any,
    temperatures: Any = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Each class's probability :math:`\mathrm{softmax}(z/T)_i` as a function of T (log x axis).

    Low T approaches the one-hot argmax, high T the uniform distribution 1/N (dotted line).

    Parameters
    ----------
    logits : array-like, shape (num_classes,)
    temperatures : array-like, optional
        Defaults to 200 values from 0.05 to 100, spaced geometrically.
    labels : sequence of str, optional
        One label per class (used in the legend).
    ax : matplotlib Axes, optional

    Returns
    -------
    The Axes.
    """
    z = validate.logit_vector(logits)
    grid = _grid(temperatures, 0.05, 100.0)
    probs = _softened(z, grid)
    default = [f"class {i}" for i in range(z.size)]
    names = validate.class_labels(default if labels is None else labels, z.size, of="logits")
    ax = _new_axes(ax, (6, 3.5))
    for i, name in enumerate(names):
        ax.plot(grid, probs[:, i], label=str(name))
    ax.plot(grid, np.full_like(grid, 1.0 / z.size), "k:", label=f"uniform 1/{z.size}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("temperature T")
    ax.set_ylabel("softmax(z / T)")
    ax.legend(fontsize="small", ncol=2)
    return ax


def plot_entropy_vs_temperature(
    logits: Any, temperatures: Any = None, ax: Axes | None = None
) -> Axes:
    r"""Entropy of the softened distribution :math:`H(\mathrm{softmax}(z/T))` against T.

    .. math:: H(p) = -\sum_i p_i \ln p_i \quad \text{(nats)}

    It rises from 0 (one-hot, T -> 0, for a unique largest logit) to ln N (uniform,
    T -> inf); both limits are drawn as dotted lines.

    Returns
    -------
    The Axes.
    """
    z = validate.logit_vector(logits)
    grid = _grid(temperatures, 0.05, 100.0)
    entropy = ops.convert_to_numpy(losses.entropy(_softened(z, grid)))
    ax = _new_axes(ax, (6, 3.5))
    ax.plot(grid, entropy, label="H(softmax(z / T))")
    ax.plot(grid, np.full_like(grid, np.log(z.size)), "k:", label=f"ln {z.size} (uniform)")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("entropy (nats)")
    ax.legend(fontsize="small")
    return ax


def plot_kl_asymmetry(
    q: Sequence[float] = (0.2, 0.8), num: int = 199, ax: Axes | None = None
) -> Axes:
    r"""Forward and reverse KL between :math:`p_a = (a, 1 - a)` and a fixed two-class ``q``.

    .. math:: \mathrm{KL}(p_a \,\|\, q) \quad\text{and}\quad \mathrm{KL}(q \,\|\, p_a)

    for ``a`` in (0, 1), computed with :func:`kdlib.losses.kl_divergence`. Both are 0 at
    ``p_a = q`` and differ elsewhere: KL is not symmetric.

    Returns
    -------
    The Axes.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (2,) or np.any(q <= 0) or not np.isclose(q.sum(), 1.0):
        raise ValueError(
            f"q must be two positive probabilities that sum to 1, got {q!r}; e.g. q=(0.2, 0.8)."
        )
    num = validate.positive_int(num, "num", example=199)
    a = np.linspace(0.0, 1.0, num + 2)[1:-1]
    p = np.stack([a, 1.0 - a], axis=-1)
    qs = np.broadcast_to(q, p.shape)
    forward = ops.convert_to_numpy(losses.kl_divergence(p, qs))
    reverse = ops.convert_to_numpy(losses.kl_divergence(qs, p))
    ax = _new_axes(ax, (6, 3.5))
    ax.plot(a, forward, label="forward KL(p ‖ q)")
    ax.plot(a, reverse, label="reverse KL(q ‖ p)")
    ax.axvline(q[0], color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"a, where p = (a, 1 − a) and q = ({q[0]:g}, {q[1]:g})")
    ax.set_ylabel("KL (nats)")
    ax.legend(fontsize="small")
    return ax


def plot_gradient_norm_vs_temperature(
    teacher_logits: Any,
    student_logits: Any,
    temperatures: Any = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Size of the soft-target gradient with respect to the student logits, against T.

    With :math:`p_T = \mathrm{softmax}(t/T)` and :math:`q_T = \mathrm{softmax}(s/T)`:

    .. math:: \Big\|\frac{\partial\, \mathrm{KL}(p_T \| q_T)}{\partial s}\Big\|
              = \Big\|\frac{q_T - p_T}{T}\Big\|, \qquad
              \Big\|\frac{\partial\, T^2 \mathrm{KL}(p_T \| q_T)}{\partial s}\Big\|
              = \big\|T\,(q_T - p_T)\big\|

    Without T² the gradient shrinks like 1/T² at high T; with T² it tends to the constant
    :math:`\|(s - \bar s) - (t - \bar t)\| / N` (dotted line): matching zero-mean logits.

    Returns
    -------
    The Axes.
    """
    t = validate.logit_vector(teacher_logits, "teacher_logits")
    s = validate.logit_vector(student_logits, "student_logits")
    if t.shape != s.shape:
        raise ValueError(
            f"teacher_logits and student_logits must have the same length, got {t.size} and "
            f"{s.size}; both hold one logit per class."
        )
    grid = _grid(temperatures, 0.5, 100.0)
    diff = _softened(s, grid) - _softened(t, grid)
    without = np.linalg.norm(diff, axis=-1) / grid
    with_t2 = np.linalg.norm(diff, axis=-1) * grid
    limit = np.linalg.norm((s - s.mean()) - (t - t.mean())) / s.size
    ax = _new_axes(ax, (6, 3.5))
    ax.plot(grid, without, label="without T²: ‖(q_T − p_T) / T‖")
    ax.plot(grid, with_t2, label="with T²: ‖T (q_T − p_T)‖")
    ax.plot(grid, np.full_like(grid, limit), "k:", label=r"limit $\|\tilde s - \tilde t\| / N$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("gradient norm w.r.t. student logits")
    ax.legend(fontsize="small")
    return ax
