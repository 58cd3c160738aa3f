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


# --------------------------------------------------------------------------------------
# The MNIST distillation experiment (notebook 04 and `kdlib distill --plot`)
# --------------------------------------------------------------------------------------

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
    ax = _new_axes(ax, (7, 4))
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
            ax.plot(epochs, validation, ls="-", marker="o", ms=3, color=color,
                    label=f"{name} (validation)")
            best = (best_epochs or {}).get(name)
            if best is not None:
                ax.plot([best], [validation[best - 1]], marker="*", ms=14, color=color,
                        markeredgecolor="black", ls="none")
    ax.set_xlabel("epoch" + (" (★ = epoch kept, best on validation)" if best_epochs else ""))
    ax.set_ylabel(metric)
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3)
    _note_cut_axis(ax)
    return ax


def plot_paired_differences(
    comparisons: Sequence[Any], ax: Axes | None = None
) -> Axes:
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
    ax = _new_axes(ax, (6, 3.5))
    ax.axhline(0.0, color="grey", lw=1)
    for i, c in enumerate(comparisons):
        d = 100 * np.asarray(c.differences, dtype=np.float64)
        offsets = np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else np.zeros(1)
        ax.plot(i + offsets, d, "o", color=f"C{i}", alpha=0.7, ls="none")
        if len(d) > 1:
            mean, low, high = (100 * c.mean.mean, 100 * c.mean.low, 100 * c.mean.high)
            ax.errorbar([i + 0.3], [mean], yerr=[[mean - low], [high - mean]], fmt="D",
                        color="black", capsize=5)
    ax.set_xticks(range(len(comparisons)), [f"{c.b} − {c.a}" for c in comparisons])
    ax.set_xlim(-0.5, len(comparisons) - 0.3)
    ax.set_ylabel("difference of test accuracy\n(points)")
    n = len(comparisons[0].differences)
    ax.set_title(
        f"per seed (dots), mean and 95 % CI (diamond), {n} seeds" if n > 1
        else "one seed: no interval"
    )
    ax.grid(alpha=0.3, axis="y")
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
    The Figure; ``fig.axes`` holds three Axes per row (image, T = 1, T).
    """
    temperature = losses.check_temperature(temperature)
    images = np.asarray(images)
    z = np.asarray(teacher_logits, dtype=np.float32)
    if z.ndim != 2 or images.ndim != 3 or len(images) != len(z) or len(z) == 0:
        raise ValueError(
            f"images must be (n, height, width) and teacher_logits (n, num_classes) for the "
            f"same n >= 1, got shapes {images.shape} and {z.shape}."
        )
    rows = len(z)
    fig, axes = plt.subplots(
        rows, 3, figsize=(8, 1.6 * rows), squeeze=False,
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
    The Figure; one Axes per digit drawn (``n`` or ``max_images``, whichever is smaller),
    then any empty cells of the last row, switched off.
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
    columns = max(1, min(columns, count))
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
        ax.annotate(f"{mean:.2f}", (i, float(np.max(acc))), ha="center", va="bottom",
                    fontsize="small", xytext=(0, 4), textcoords="offset points")
    low = min(float(np.min(a)) for a in per_model)
    high = max(float(np.max(a)) for a in per_model)
    ax.set_ylim(max(0.0, low - 0.5), min(100.0, high + 0.4))
    ax.set_xticks(range(len(names)), list(names))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    seeds = max(a.size for a in per_model)
    ax.set_title("test accuracy: each seed (dot), mean (line)" if seeds > 1
                 else "test accuracy (one seed)")
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
            ax.annotate(f"{int(p):,}", (i, int(p)), ha="center", va="bottom",
                        fontsize="small", xytext=(0, 3), textcoords="offset points")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
