"""Matplotlib helpers shared by the notebooks and the ``kdlib distill`` command.

Every function draws on a ``matplotlib.axes.Axes`` (created if not given) and returns the
figure or axes, so it works without a display (``MPLBACKEND=Agg``) and in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from keras import ops
from matplotlib.axes import Axes

from kdlib import losses

# --------------------------------------------------------------------------------------
# Softmax, temperature, KL and the distillation gradient (notebooks 01-03)
# --------------------------------------------------------------------------------------


def _logit_vector(logits: Any, name: str = "logits") -> np.ndarray:
    """A 1-D float64 array of at least two finite entries, or a ValueError that says why."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or z.size < 2 or not np.all(np.isfinite(z)):
        raise ValueError(
            f"{name} must be a 1-D sequence of at least two finite numbers (one per class), "
            f"got {logits!r}; e.g. {name}=[2.0, 1.0, 0.1]."
        )
    return z


def _temperature_grid(temperatures: Any, default: tuple[float, float]) -> np.ndarray:
    if temperatures is None:
        return np.geomspace(default[0], default[1], 200)
    grid = np.asarray(temperatures, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError(
            f"temperatures must be finite numbers > 0, got {temperatures!r}; "
            "e.g. temperatures=np.geomspace(0.1, 100, 200)."
        )
    return grid


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
    The Axes; ``ax.patches`` holds one bar per class, in order.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(
            f"probabilities must be a 1-D array of finite numbers >= 0, got {probabilities!r}; "
            "pass one probability per class, e.g. softmax_with_temperature(logits, T)."
        )
    names = [str(i) for i in range(p.size)] if labels is None else [str(x) for x in labels]
    if len(names) != p.size:
        raise ValueError(
            f"labels has {len(names)} entries but probabilities has {p.size}; "
            "give exactly one label per class."
        )
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
    The Axes; ``ax.lines[i]`` is class ``i`` (x = temperatures, y = probabilities), and the
    last line is the uniform level 1/N.
    """
    z = _logit_vector(logits)
    grid = _temperature_grid(temperatures, (0.05, 100.0))
    probs = _softened(z, grid)
    names = [f"class {i}" for i in range(z.size)] if labels is None else list(labels)
    if len(names) != z.size:
        raise ValueError(
            f"labels has {len(names)} entries but logits has {z.size}; "
            "give exactly one label per class."
        )
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
    The Axes; ``ax.lines[0]`` is the entropy curve (x = temperatures, y = entropy in nats),
    ``ax.lines[1]`` the level ln N.
    """
    z = _logit_vector(logits)
    grid = _temperature_grid(temperatures, (0.05, 100.0))
    probs = _softened(z, grid)
    # p ln p -> 0 as p -> 0: mask the zeros instead of adding an epsilon.
    safe = np.where(probs > 0, probs, 1.0)
    entropy = -np.sum(np.where(probs > 0, probs * np.log(safe), 0.0), axis=-1)
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
    The Axes; ``ax.lines[0]`` is KL(p_a || q), ``ax.lines[1]`` is KL(q || p_a), both
    with x = a.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (2,) or np.any(q <= 0) or not np.isclose(q.sum(), 1.0):
        raise ValueError(
            f"q must be two positive probabilities that sum to 1, got {q!r}; e.g. q=(0.2, 0.8)."
        )
    if num < 3:
        raise ValueError(f"num must be at least 3 points, got {num!r}; e.g. num=199.")
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
    The Axes; ``ax.lines[0]`` is the norm without T², ``ax.lines[1]`` with T²,
    ``ax.lines[2]`` the high-temperature limit (x = temperatures in each).
    """
    t = _logit_vector(teacher_logits, "teacher_logits")
    s = _logit_vector(student_logits, "student_logits")
    if t.shape != s.shape:
        raise ValueError(
            f"teacher_logits and student_logits must have the same length, got {t.size} and "
            f"{s.size}; both hold one logit per class."
        )
    grid = _temperature_grid(temperatures, (0.5, 100.0))
    diff = _softened(s, grid) - _softened(t, grid)
    without = np.linalg.norm(diff, axis=-1) / grid
    with_t2 = np.linalg.norm(diff, axis=-1) * grid
    limit = np.linalg.norm((s - s.mean()) - (t - t.mean())) / s.size
    ax = _new_axes(ax, (6, 3.5))
    ax.plot(grid, without, label="without T²: ‖(q_T − p_T) / T‖")
    ax.plot(grid, with_t2, label="with T²: ‖T (q_T − p_T)‖")
    ax.plot(grid, np.full_like(grid, limit), "k:", label="limit ‖Δ zero-mean logits‖ / N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("gradient norm w.r.t. student logits")
    ax.legend(fontsize="small")
    return ax
