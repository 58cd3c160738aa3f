"""What the experiment reports: result types and their text.

:func:`summarise` measures one trained model (accuracy over seeds, agreement with the
teacher, parameters, size on disk, inference time, kept epochs) with the functions of
:mod:`kdlib.experiment.report` (importable from here too); :class:`ExperimentResult`
holds the summaries and the paired comparisons and writes the JSON of
``kdlib distill --json``; :func:`format_table`,
:func:`~kdlib.experiment.conclusions.format_statistics` and
:func:`~kdlib.experiment.conclusions.summary_markdown` are the text of ``kdlib distill`` and
notebook 04.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from kdlib import stats, validate
from kdlib.experiment.config import STOPPING_MONITOR

if TYPE_CHECKING:
    from kdlib.experiment.config import ExperimentConfig
    from kdlib.experiment.splits import Splits

__all__ = [
    "ExperimentResult",
    "device_description",
    "format_table",
    "machine_state",
    "median_ms",
    "predict_classes",
    "saved_size_bytes",
    "summarise",
]


# --------------------------------- Measurements of a trained model and of the machine it runs on
#: Batch size of every inference pass (soft targets, predictions, timing). One size for all,
#: dividing every split evenly, so each model's predict function is traced once.
INFERENCE_BATCH_SIZE = 1000


def predict_classes(
    model: keras.Model, x: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE
) -> np.ndarray:
    """The class each image is assigned (argmax of the logits)."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)


def saved_size_bytes(model: keras.Model) -> int:
    """Bytes of the model saved as ``.keras``, architecture and weights only (what you ship).

    A copy is saved, so a compiled model's optimizer state is not counted.
    """
    # From get_config(), which holds no compile state (clone_model would recompile the copy,
    # and the optimizer's variables would then be saved too).
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{model.name}.keras"
        copy.save(path)
        return path.stat().st_size


def inference_ms_per_1000(
    model: keras.Model,
    x: np.ndarray,
    batch_size: int = INFERENCE_BATCH_SIZE,
    repeats: int = 3,
    warm_up: bool = True,
) -> float:
    """Milliseconds to predict 1,000 images: median of ``repeats`` passes over ``x``.

    ``warm_up`` runs one untimed pass first, so that tracing is not counted; skip it only
    when the model has just predicted ``x`` with this ``batch_size``.
    """
    if warm_up:
        model.predict(x, batch_size=batch_size, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) * 1000.0 / len(x)


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of one call of ``fn()`` (any model, any runtime).

    ``warmup`` untimed calls first (tracing, compilation, memory allocation), then
    ``repeats`` timed ones; the median ignores the slow outliers that other processes on a
    shared machine cause. Print :func:`machine_state` beside the result.
    """
    repeats = validate.positive_int(repeats, "repeats", example=20)
    warmup = validate.non_negative_int(warmup, "warmup", example=3)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def machine_state() -> str:
    """CPU cores and load averages, e.g. ``"2 CPU cores, load average 0.41 / 0.52 / 0.60
    (1 / 5 / 15 min)"``: the context every timing needs (load unknown off Unix)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return f"{os.cpu_count()} CPU cores, load average unknown"
    return (
        f"{os.cpu_count()} CPU cores, load average {one:.2f} / {five:.2f} / {fifteen:.2f} "
        "(1 / 5 / 15 min)"
    )


def device_description() -> str:
    """Which device Keras computes on, e.g. ``"GPU (1 x /physical_device:GPU:0)"``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # device discovery only

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU ({len(gpus)} x {gpus[0].name}), backend {backend}"
        return f"CPU ({os.cpu_count()} cores visible), backend {backend}"
    if backend == "torch":  # Keras' distribution API (list_devices) is JAX's and TF's only
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return f"GPU ({count} x {torch.cuda.get_device_name(0)}), backend {backend}"
        return f"CPU ({os.cpu_count()} cores visible), backend {backend}"
    return f"backend {backend}, devices {keras.distribution.list_devices()}"


def run_conditions() -> dict[str, Any]:
    """Where and how a run happens: device, CPU count, load average, library versions.

    Timings (``ms_per_1000``, ``seconds``) mean little without these: on a shared machine
    they can be several times slower than on a quiet one.
    """
    conditions: dict[str, Any] = {
        "device": device_description(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        conditions["load_average_1min"] = round(os.getloadavg()[0], 2)
    return conditions


@dataclass(frozen=True)
class ModelReport:
    """What the experiment measured for one model (students: mean over seeds).

    Attributes
    ----------
    params : int
        Number of weights.
    size_bytes : int
        Size of the model saved as ``.keras`` without optimizer state.
    test_accuracy, test_accuracy_std : float
        Mean and sample standard deviation (ddof=1; 0 for one seed) over seeds.
    test_errors : int
        Misclassified test images, mean over seeds rounded.
    agreement : float
        Fraction of test images on which the model predicts the teacher's class.
    ms_per_1000 : float
        Inference time for 1,000 images on this machine (median of repeats, first seed).
    test_accuracies : tuple of float
        Test accuracy for each seed.
    test_errors_per_seed : tuple of int
        Misclassified test images for each seed.
    best_epochs : tuple of int
        The epoch (1-based) whose weights were kept, for each seed (best validation
        accuracy).
    epochs_run : tuple of int
        Epochs trained for each seed before the stopping rule (or the budget) ended it.
    """

    name: str
    params: int
    size_bytes: int
    test_accuracy: float
    test_accuracy_std: float
    test_errors: int
    agreement: float
    ms_per_1000: float
    test_accuracies: tuple[float, ...]
    test_errors_per_seed: tuple[int, ...] = ()
    best_epochs: tuple[int, ...] = ()
    epochs_run: tuple[int, ...] = ()


@dataclass
class Artifacts:
    """The trained models (first seed), test data and every seed's test predictions.

    For plots and further analysis; not part of the report. ``predictions`` maps each model
    name to one vector of predicted test classes per seed (the teacher: one vector).
    """

    teacher: keras.Model
    scratch: keras.Model
    distilled: keras.Model
    splits: Splits
    smoothed: keras.Model | None = None
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    """The outcome of :func:`kdlib.experiment.run_experiment`.

    ``histories`` holds the Keras ``History.history`` dicts of the teacher and of the first
    seed's students, by the names ``"teacher"``, ``"scratch"``, ``"smoothed"``,
    ``"distilled"``. ``comparisons`` holds the paired statistics of the students
    (:data:`kdlib.experiment.config.COMPARISONS`), by names such as
    ``"distilled_vs_scratch"``. ``conditions`` records where the run happened (devices,
    CPU load, library versions).
    """

    config: ExperimentConfig
    teacher: ModelReport
    scratch: ModelReport
    distilled: ModelReport
    num_test: int
    seconds: float
    device: str
    histories: dict[str, dict[str, list[float]]]
    artifacts: Artifacts | None = field(default=None, repr=False, compare=False)
    smoothed: ModelReport | None = None
    comparisons: dict[str, stats.PairedComparison] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        """Distilled minus scratch mean test accuracy (a fraction, not points)."""
        return self.distilled.test_accuracy - self.scratch.test_accuracy

    def students(self) -> list[ModelReport]:
        """The student reports in table order (scratch, smoothed, distilled)."""
        return [r for r in (self.scratch, self.smoothed, self.distilled) if r is not None]

    def to_json_dict(self) -> dict[str, Any]:
        """The report in the schema of ``kdlib distill --json`` (README, ``kdlib distill``)."""

        def student(report: ModelReport) -> dict[str, Any]:
            return {
                "params": int(report.params),
                "test_accuracy": float(report.test_accuracy),
                "test_accuracy_std": float(report.test_accuracy_std),
                "test_errors": int(report.test_errors),
                "test_accuracies": [float(a) for a in report.test_accuracies],
                "test_errors_per_seed": [int(e) for e in report.test_errors_per_seed],
                "best_epochs": [int(e) for e in report.best_epochs],
                "epochs_run": [int(e) for e in report.epochs_run],
                "agreement": float(report.agreement),
                "size_bytes": int(report.size_bytes),
                "ms_per_1000": float(report.ms_per_1000),
            }

        config, teacher = self.config, self.teacher
        report: dict[str, Any] = {
            "teacher": {
                "params": int(teacher.params),
                "test_accuracy": float(teacher.test_accuracy),
                "test_errors": int(teacher.test_errors),
                "best_epoch": next(iter(teacher.best_epochs), None),
                "epochs_run": next(iter(teacher.epochs_run), None),
                "size_bytes": int(teacher.size_bytes),
                "ms_per_1000": float(teacher.ms_per_1000),
            },
            "scratch": student(self.scratch),
            "distilled": student(self.distilled),
            "temperature": float(config.temperature),
            "alpha": float(config.alpha),
            "seeds": int(config.seeds),
            "seconds": float(self.seconds),
        }
        if self.smoothed is not None:
            report["smoothed"] = student(self.smoothed)
        report.update(
            {
                "label_smoothing": float(config.label_smoothing),
                "seed_list": config.seed_list(),
                "test_images": int(self.num_test),
                "stopping": {
                    "monitor": STOPPING_MONITOR,
                    "patience": int(config.patience),
                    "max_epochs": int(config.epochs),
                    "teacher_max_epochs": int(config.teacher_epochs),
                    "restore_best_weights": True,
                },
                "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()},
                "conditions": dict(self.conditions),
            }
        )
        return report


def summarise(
    name: str,
    model: keras.Model,
    predictions: list[np.ndarray],
    y_test: np.ndarray,
    teacher_predictions: np.ndarray,
    x_test: np.ndarray,
    best_epochs: Sequence[int] = (),
    epochs_run: Sequence[int] = (),
) -> ModelReport:
    """Measure one model; ``predictions`` holds its test predictions, one array per seed,
    made by :func:`predict_classes` (so the timing needs no warm-up pass);
    ``best_epochs`` and ``epochs_run`` its kept and trained epochs per seed."""
    accuracies = [float(np.mean(p == y_test)) for p in predictions]
    errors = [int(np.sum(p != y_test)) for p in predictions]
    agreements = [float(np.mean(p == teacher_predictions)) for p in predictions]
    return ModelReport(
        name=name,
        params=int(model.count_params()),
        size_bytes=saved_size_bytes(model),
        test_accuracy=float(np.mean(accuracies)),
        test_accuracy_std=float(statistics.stdev(accuracies)) if len(accuracies) > 1 else 0.0,
        test_errors=int(round(float(np.mean(errors)))),
        agreement=float(np.mean(agreements)),
        ms_per_1000=inference_ms_per_1000(model, x_test, warm_up=False),
        test_accuracies=tuple(accuracies),
        test_errors_per_seed=tuple(errors),
        best_epochs=tuple(int(e) for e in best_epochs),
        epochs_run=tuple(int(e) for e in epochs_run),
    )


# ------------------------------------------------------------------------------ the text
def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def gain_sentence(comparison: stats.PairedComparison) -> str:
    mean = comparison.mean
    text = f"{_points(mean.mean)} points of test accuracy"
    if not math.isnan(mean.low):
        text += (
            f" (95 % CI {_points(mean.low)} to {_points(mean.high)}, paired t-test "
            f"p = {_p(comparison.t_test.p_value)})"
        )
    return text


def format_table(result: ExperimentResult) -> str:
    """The comparison table that ``kdlib distill`` prints and notebook 04 shows."""
    seeds = result.config.seeds
    header = (
        f"{'model':<10} {'params':>9} {'size KB':>8} {'test accuracy %':>16} "
        f"{'errors':>7} {'agrees w/ teacher %':>20} {'best epochs':>16} {'ms / 1000 img':>14}"
    )
    lines = [header, "-" * len(header)]
    for report in (result.teacher, *result.students()):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher" and seeds > 1:
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        epochs = ",".join(map(str, report.best_epochs))
        lines.append(
            f"{report.name:<10} {report.params:>9,} {report.size_bytes / 1024:>8.1f} "
            f"{accuracy:>16} {report.test_errors:>7,} {100 * report.agreement:>20.2f} "
            f"{epochs:>16} {report.ms_per_1000:>14.2f}"
        )
    config = result.config
    lines.append("")
    lines.append(
        f"T = {config.temperature:g}, alpha = {config.alpha:g}, label smoothing = "
        f"{config.label_smoothing:g}, seeds = {seeds} "
        f"({', '.join(map(str, config.seed_list()))}), test images = {result.num_test:,}"
    )
    lines.append(
        f"each model keeps its best validation-accuracy epoch (patience {config.patience}; "
        f"at most {config.epochs} student and {config.teacher_epochs} teacher epochs); "
        "accuracy: mean ± std over seeds"
    )
    comparison = result.comparisons.get("distilled_vs_scratch")
    if comparison is not None:
        lines.append(f"distillation gain: {gain_sentence(comparison)}")
    lines.append(f"{result.seconds:.0f} s on {result.device}")
    return "\n".join(lines)
