"""``kdlib sweep``: a temperature x alpha x seed grid of small students, trained at once.

:func:`run_sweep` prepares MNIST and trains the teacher with :mod:`kdlib.experiment`
(``prepare_data``, ``train_teacher``), caches the teacher's logits once
(:func:`kdlib.soft_targets.cache_soft_targets`; for an arithmetic-mean
:class:`kdlib.Ensemble`, whose soft targets are not the softmax of one logit vector, once per
temperature: :func:`teacher_targets_per_student`), then trains every student of the grid, plus
a scratch baseline (``alpha = 1``: labels only) per seed, as one
:class:`kdlib.sweep.stacked.StackedStudents` model: the gradients are exactly those of separate
trainings, in a fraction of the time. All students of one seed start from the same initial
weights (a :func:`kdlib.models.mlp` built after ``keras.utils.set_random_seed(seed)``), and
all students see the same batches, so each distilled student is paired with its seed's
scratch twin.

Protocol: every student trains for a fixed number of epochs (no early stopping); validation
accuracy, averaged over seeds, selects one (T, alpha); the test accuracy of that cell and
of the scratch baseline is what the sweep reports. The test accuracy of every other cell is
in the JSON for plots, not for choosing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from kdlib import config as kdconfig
from kdlib import experiment, models, validate
from kdlib.distiller import LABELS_KEY, TEACHER_LOGITS_KEY
from kdlib.ensemble import Ensemble, mean_logits
from kdlib.experiment import report
from kdlib.soft_targets import cache_soft_targets
from kdlib.sweep.stacked import StackedStudents

__all__ = [
    "FULL_GRID",
    "FAST_GRID",
    "SweepConfig",
    "SweepResult",
    "run_sweep",
    "format_summary",
    "load_json",
    "teacher_targets_per_student",
]

FULL_GRID: dict[str, Any] = {
    "temperatures": (1.0, 2.0, 4.0, 8.0, 20.0),
    "alphas": (0.0, 0.1, 0.5, 0.9),
    "seeds": 3,
    "epochs": 30,
}
FAST_GRID: dict[str, Any] = {
    "temperatures": (2.0, 8.0),
    "alphas": (0.1, 0.5),
    "seeds": 2,
    "epochs": 3,
}


@dataclass(frozen=True)
class SweepConfig:
    """The grid and the training settings of a sweep; validated when created.

    ``hidden`` sets the student MLP (default: one layer of 50 units, ``kdlib distill``'s
    student). Data sizes, epochs and the teacher follow :class:`kdlib.experiment.
    ExperimentConfig` (``experiment`` holds it); use :meth:`default` for the full or the
    fast (``KDLIB_FAST=1``) settings.
    """

    temperatures: tuple[float, ...] = FULL_GRID["temperatures"]
    alphas: tuple[float, ...] = FULL_GRID["alphas"]
    hidden: tuple[int, ...] = (50,)
    experiment: experiment.ExperimentConfig = field(default_factory=experiment.ExperimentConfig)
    #: Whether these are the fast settings (recorded in the JSON).
    fast: bool = False

    def __post_init__(self) -> None:
        if not self.temperatures or not self.alphas:
            raise ValueError(
                "a sweep needs at least one temperature and one alpha, e.g. "
                "temperatures=(2, 4), alphas=(0.1,)."
            )
        temperatures = [validate.temperature(t, "temperatures") for t in self.temperatures]
        alphas = [validate.alpha(a, "alphas") for a in self.alphas]
        object.__setattr__(
            self, "temperatures", validate.distinct_values(temperatures, "temperatures", "(2, 4)")
        )
        object.__setattr__(
            self, "alphas", validate.distinct_values(alphas, "alphas", "(0.1, 0.5)")
        )
        object.__setattr__(self, "hidden", validate.layer_sizes(self.hidden, "hidden", "(50,)"))

    @classmethod
    def default(
        cls,
        temperatures: Sequence[float] | None = None,
        alphas: Sequence[float] | None = None,
        hidden: Sequence[int] = (50,),
        *,
        fast: bool | None = None,
        **experiment_overrides: Any,
    ) -> SweepConfig:
        """Full grid (5 T x 4 alpha x 3 seeds, 30 epochs) or, fast, 2 x 2 x 2 and 3 epochs; the
        data and teacher of :meth:`kdlib.experiment.ExperimentConfig.default`. ``fast``
        chooses (``kdlib sweep --fast``); None reads ``KDLIB_FAST``."""
        fast = kdconfig.fast_mode() if fast is None else fast
        grid = kdconfig.pick(full=FULL_GRID, fast=FAST_GRID, enabled=fast)
        for name in ("seeds", "epochs"):  # 30 epochs (fast 3), not kdlib distill's budget
            if experiment_overrides.get(name) is None:
                experiment_overrides[name] = grid[name]
        return cls(
            temperatures=tuple(grid["temperatures"] if temperatures is None else temperatures),
            alphas=tuple(grid["alphas"] if alphas is None else alphas),
            hidden=tuple(hidden),
            experiment=experiment.ExperimentConfig.default(fast=fast, **experiment_overrides),
            fast=fast,
        )

    def cells(self) -> list[tuple[float, float]]:
        """Every (temperature, alpha) of the grid."""
        return [(t, a) for t in self.temperatures for a in self.alphas]


@dataclass
class SweepResult:
    """What :func:`run_sweep` measured; ``to_json_dict()`` is the ``--json`` schema."""

    config: SweepConfig
    records: list[dict[str, Any]]
    scratch: list[dict[str, Any]]
    teacher: dict[str, Any]
    seconds: dict[str, float]
    load_average: dict[str, list[float]]
    stack: StackedStudents | None = field(default=None, repr=False)
    teacher_model: keras.Model | None = field(default=None, repr=False)
    splits: experiment.Splits | None = field(default=None, repr=False)

    def cell_means(self, key: str = "val_accuracy") -> dict[tuple[float, float], float]:
        """Mean of ``key`` over seeds for every (T, alpha)."""
        return {
            cell: statistics.fmean(
                r[key] for r in self.records if (r["temperature"], r["alpha"]) == cell
            )
            for cell in self.config.cells()
        }

    def selected(self) -> dict[str, Any]:
        """The (T, alpha) with the best mean validation accuracy, and its test accuracies."""
        means = self.cell_means()
        t, a = max(means, key=lambda cell: (means[cell], -cell[0], -cell[1]))
        rows = [r for r in self.records if (r["temperature"], r["alpha"]) == (t, a)]
        return {
            "temperature": t,
            "alpha": a,
            "val_accuracy": means[(t, a)],
            **_summary([r["test_accuracy"] for r in rows]),
            "gain_over_scratch": _summary(
                [r["test_accuracy"] - s["test_accuracy"] for r, s in zip(rows, self.scratch)]
            ),
        }

    def to_json_dict(self) -> dict[str, Any]:
        ex = self.config.experiment
        return {
            "records": self.records,
            "scratch": self.scratch,
            "scratch_summary": _summary([s["test_accuracy"] for s in self.scratch]),
            "selected": self.selected(),
            "teacher": self.teacher,
            "temperatures": list(self.config.temperatures),
            "alphas": list(self.config.alphas),
            "seeds": ex.seed_list(),
            "hidden": list(self.config.hidden),
            "students": len(self.records) + len(self.scratch),
            "epochs": ex.epochs,
            "settings": {k: v for k, v in dataclasses.asdict(ex).items() if k != "verbose"},
            "seconds": self.seconds,
            "load_average": self.load_average,
            "fast": self.config.fast,
        }


def _summary(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and the values themselves."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "values": list(values)}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return [round(x, 2) for x in os.getloadavg()]


def run_sweep(
    config: SweepConfig | None = None,
    *,
    teacher: keras.Model | None = None,
    data_path: str | os.PathLike[str] | None = None,
) -> SweepResult:
    """Train the teacher (unless given) and every student of the grid; measure them.

    Parameters
    ----------
    config : SweepConfig, optional
        Defaults to :meth:`SweepConfig.default`.
    teacher : keras.Model, optional
        A trained teacher (logits out) to reuse, e.g. from an earlier sweep
        (``result.teacher_model``) or ``keras.models.load_model``; trained here if None.
        It is recorded as what it is (:func:`_teacher_name`), not as ``config``'s teacher.
    data_path : path, optional
        An explicit ``mnist.npz``.
    """
    config = config or SweepConfig.default()
    ex = config.experiment
    loads = {"start": load_average()}
    start = time.perf_counter()
    splits = experiment.prepare_data(ex, data_path)
    trained_here = teacher is None
    if teacher is None:
        teacher, _ = experiment.train_teacher(ex, splits)
    teacher_seconds = time.perf_counter() - start
    seeds = ex.seed_list()
    settings = [(1.0, 1.0, s) for s in seeds] + [
        (t, a, s) for s in seeds for t, a in config.cells()
    ]
    if isinstance(teacher, Ensemble) and teacher.temperature_dependent:  # arithmetic mean
        targets = teacher_targets_per_student(
            teacher,
            splits.x_train,
            splits.y_train,
            [t for t, _, _ in settings],
            [a for _, a, _ in settings],
        )
    else:  # one set of logits, exact at every temperature
        targets = cache_soft_targets(
            teacher,
            splits.x_train,
            splits.y_train,
            batch_size=report.INFERENCE_BATCH_SIZE,
            verbose=0,
        )
    stack = StackedStudents(
        [t for t, _, _ in settings], [a for _, a, _ in settings], hidden=config.hidden
    )
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        init = models.mlp(hidden=config.hidden).get_weights()
        for i, (_, _, s) in enumerate(settings):
            if s == seed:
                stack.set_student_weights(i, init)
    stack.compile(optimizer=keras.optimizers.Adam(ex.learning_rate))
    students_start = time.perf_counter()
    keras.utils.set_random_seed(ex.seed)
    stack.fit(
        splits.x_train, targets, batch_size=ex.batch_size, epochs=ex.epochs, verbose=ex.verbose
    )
    students_seconds = time.perf_counter() - students_start

    val = stack.accuracies(splits.x_val, splits.y_val)
    test = stack.accuracies(splits.x_test, splits.y_test)
    rows = [
        {
            "temperature": t,
            "alpha": a,
            "seed": s,
            "val_accuracy": float(v),
            "test_accuracy": float(te),
            "test_errors": int(round((1 - te) * len(splits.y_test))),
        }
        for (t, a, s), v, te in zip(settings, val, test)
    ]
    scratch = [
        {k: r[k] for k in ("seed", "val_accuracy", "test_accuracy", "test_errors")}
        for r in rows[: len(seeds)]
    ]
    if isinstance(teacher, Ensemble):  # the mean prediction at T = 1, whatever its temperature
        predicted = np.argmax(teacher.soft_targets(splits.x_test, 1.0), axis=-1)
    else:
        predicted = report.predict_classes(teacher, splits.x_test)
    teacher_test = float(np.mean(predicted == splits.y_test))
    loads["end"] = load_average()
    return SweepResult(
        config=config,
        records=rows[len(seeds) :],
        scratch=scratch,
        teacher={
            "name": ex.teacher if trained_here else _teacher_name(teacher),
            "trained_here": trained_here,
            "params": int(teacher.count_params()),
            "test_accuracy": teacher_test,
        },
        seconds={
            "teacher_and_data": teacher_seconds,
            "students": students_seconds,
            "total": time.perf_counter() - start,
        },
        load_average=loads,
        stack=stack,
        teacher_model=teacher,
        splits=splits,
    )


def teacher_targets_per_student(
    teacher: Ensemble,
    x: np.ndarray,
    y: np.ndarray,
    temperatures: Sequence[float],
    alphas: Sequence[float],
) -> dict[str, np.ndarray]:
    """Cached targets with a teacher column per student, for a temperature-dependent teacher.

    An arithmetic-mean :class:`kdlib.Ensemble`'s soft targets at temperature T are the
    softmax of logits that change with T (:func:`kdlib.ensemble.mean_logits`), so one cache
    cannot serve students of several temperatures. Student ``n``'s column holds the logits
    exact at ``temperatures[n]``; the members run once, and each distinct temperature is
    computed once from their logits. A scratch student (``alpha = 1``) ignores its column
    and shares the first distilled one.

    Returns
    -------
    dict
        ``{"labels": y, "teacher_logits": logits}``, ``logits`` float32 of shape
        ``(n, len(temperatures), classes)`` (what :class:`~kdlib.sweep.stacked.StackedStudents`
        takes).
    """
    if not isinstance(teacher, Ensemble):
        raise TypeError(
            f"teacher_targets_per_student takes a kdlib.Ensemble, got "
            f"{type(teacher).__name__}; a single model's logits serve every temperature: "
            "use kdlib.soft_targets.cache_soft_targets(teacher, x, y)."
        )
    if len(temperatures) != len(alphas) or not temperatures:
        raise ValueError(
            f"give one temperature and one alpha per student, got {len(temperatures)} "
            f"temperatures and {len(alphas)} alphas."
        )
    temperatures = [validate.temperature(t, "temperatures") for t in temperatures]
    alphas = [validate.alpha(a, "alphas") for a in alphas]
    distilled = list(dict.fromkeys(t for t, a in zip(temperatures, alphas) if a < 1.0))
    needed = distilled or [temperatures[0]]
    z = teacher.predict_member_logits(x, batch_size=report.INFERENCE_BATCH_SIZE)
    cache = {t: mean_logits(z, t, teacher.mean).astype(np.float32) for t in needed}
    columns = [cache[t] if a < 1.0 else cache[needed[0]] for t, a in zip(temperatures, alphas)]
    return {LABELS_KEY: y, TEACHER_LOGITS_KEY: np.stack(columns, axis=1)}


def _teacher_name(model: keras.Model) -> str:
    """What a given teacher is: the key of :data:`kdlib.experiment.TEACHERS` whose
    architecture (the shapes of every weight) it has, else its own Keras name; for a
    :class:`kdlib.Ensemble`, e.g. ``"ensemble of 3 cnn (arithmetic)"``."""
    known = {
        name: [tuple(w.shape) for w in build().weights]
        for name, build in experiment.TEACHERS.items()
    }

    def name_of(single: keras.Model) -> str:
        shapes = [tuple(w.shape) for w in single.weights]
        return next((name for name, s in known.items() if s == shapes), str(single.name))

    if not isinstance(model, Ensemble):
        return name_of(model)
    counts: dict[str, int] = {}
    for member in model.members:
        name = name_of(member)
        counts[name] = counts.get(name, 0) + 1
    kinds = ", ".join(f"{count} {name}" for name, count in counts.items())
    return f"ensemble of {kinds} ({model.mean})"


def format_summary(result: SweepResult) -> str:
    """The table ``kdlib sweep`` prints: mean validation accuracy per (T, alpha), selection."""
    means = result.cell_means()
    config = result.config
    lines = [
        "mean validation accuracy % over seeds (rows T, columns alpha)",
        "T \\ alpha " + "".join(f"{a:>9g}" for a in config.alphas),
    ]
    for t in config.temperatures:
        lines.append(f"{t:<10g}" + "".join(f"{100 * means[(t, a)]:9.2f}" for a in config.alphas))
    scratch_val = statistics.fmean(s["val_accuracy"] for s in result.scratch)
    lines.append(f"scratch   {100 * scratch_val:9.2f}")
    sel, base = result.selected(), _summary([s["test_accuracy"] for s in result.scratch])
    n = len(result.scratch)
    lines += [
        "",
        f"selected on validation: T = {sel['temperature']:g}, alpha = {sel['alpha']:g}",
        f"test accuracy (mean ± std over {n} seeds): distilled {100 * sel['mean']:.2f} ± "
        f"{100 * sel['std']:.2f}, scratch {100 * base['mean']:.2f} ± {100 * base['std']:.2f}, "
        f"paired gain {100 * sel['gain_over_scratch']['mean']:+.2f} ± "
        f"{100 * sel['gain_over_scratch']['std']:.2f} points",
        f"teacher ({result.teacher['name']}) test accuracy "
        f"{100 * result.teacher['test_accuracy']:.2f}",
        f"{len(result.records) + n} students x {config.experiment.epochs} epochs trained "
        f"stacked in {result.seconds['students']:.0f} s (teacher and data "
        f"{result.seconds['teacher_and_data']:.0f} s); load average "
        f"{result.load_average['start']} -> {result.load_average['end']}",
    ]
    return "\n".join(lines)


def load_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``kdlib sweep --json`` file (e.g. under ``results/``)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
