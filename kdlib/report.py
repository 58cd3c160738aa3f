"""What the experiment reports: result types, measurements and the comparison table.

:func:`summarise` measures one trained model (accuracy over seeds, agreement with the
teacher, parameters, size on disk, inference time); :class:`ExperimentResult` holds the
three summaries and writes the JSON of ``kdlib distill --json``; :func:`format_table`
prints the table of ``kdlib distill`` and notebook 04.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from kdlib import validate

if TYPE_CHECKING:
    from kdlib.experiment import Splits
    from kdlib.experiment_config import ExperimentConfig

#: Batch size of every inference pass (soft targets, predictions, timing). One size for all,
#: dividing every split evenly, so each model's predict function is traced once.
INFERENCE_BATCH_SIZE = 1000


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


@dataclass
class Artifacts:
    """The trained models (first seed) and the data, for plots; not part of the report."""

    teacher: keras.Model
    scratch: keras.Model
    distilled: keras.Model
    splits: Splits


@dataclass
class ExperimentResult:
    """The outcome of :func:`kdlib.experiment.run_experiment`.

    ``histories`` holds the Keras ``History.history`` dicts of the teacher and of the first
    seed's two students, by the names ``"teacher"``, ``"scratch"``, ``"distilled"``.
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

    @property
    def gain(self) -> float:
        """Distilled minus scratch mean test accuracy (a fraction, not points)."""
        return self.distilled.test_accuracy - self.scratch.test_accuracy

    def gain_exceeds_noise(self) -> bool:
        """True if the gain exceeds the larger of the two students' standard deviations."""
        noise = max(self.scratch.test_accuracy_std, self.distilled.test_accuracy_std)
        return self.gain > noise

    def to_json_dict(self) -> dict[str, Any]:
        """The report in the schema of ``kdlib distill --json``."""

        def model(report: ModelReport, student: bool) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "params": int(report.params),
                "test_accuracy": float(report.test_accuracy),
            }
            if student:
                entry["test_accuracy_std"] = float(report.test_accuracy_std)
            entry["test_errors"] = int(report.test_errors)
            return entry

        return {
            "teacher": model(self.teacher, student=False),
            "scratch": model(self.scratch, student=True),
            "distilled": model(self.distilled, student=True),
            "temperature": float(self.config.temperature),
            "alpha": float(self.config.alpha),
            "seeds": int(self.config.seeds),
            "seconds": float(self.seconds),
        }


# ---------------------------------------------------------------------------- measuring
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
    model: keras.Model, x: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE, repeats: int = 3
) -> float:
    """Milliseconds to predict 1,000 images: median of ``repeats`` passes over ``x``, after
    one warm-up pass (so tracing and compilation are not counted)."""
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
    return f"backend {backend}, devices {keras.distribution.list_devices()}"


def summarise(
    name: str,
    model: keras.Model,
    predictions: list[np.ndarray],
    y_test: np.ndarray,
    teacher_predictions: np.ndarray,
    x_test: np.ndarray,
) -> ModelReport:
    """Measure one model; ``predictions`` holds its test predictions, one array per seed."""
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
        ms_per_1000=inference_ms_per_1000(model, x_test),
        test_accuracies=tuple(accuracies),
    )


# ----------------------------------------------------------------------------- the table
def format_table(result: ExperimentResult) -> str:
    """The comparison table that ``kdlib distill`` prints and notebook 04 shows."""
    config = result.config
    header = (
        f"{'model':<10} {'params':>9} {'size KB':>8} {'test accuracy %':>16} "
        f"{'errors':>7} {'agrees w/ teacher %':>20} {'ms / 1000 img':>14}"
    )
    lines = [header, "-" * len(header)]
    for report in (result.teacher, result.scratch, result.distilled):
        accuracy = f"{100 * report.test_accuracy:.2f}"
        if report.name != "teacher" and config.seeds > 1:
            accuracy += f" ± {100 * report.test_accuracy_std:.2f}"
        lines.append(
            f"{report.name:<10} {report.params:>9,} {report.size_bytes / 1024:>8.1f} "
            f"{accuracy:>16} {report.test_errors:>7,} {100 * report.agreement:>20.2f} "
            f"{report.ms_per_1000:>14.2f}"
        )
    lines.append("")
    lines.append(
        f"T = {config.temperature:g}, alpha = {config.alpha:g}, student epochs = "
        f"{config.epochs}, teacher epochs = {config.teacher_epochs}, seeds = {config.seeds} "
        f"({', '.join(map(str, config.seed_list()))}), test images = {result.num_test:,}"
    )
    line = f"distillation gain: {100 * result.gain:+.2f} points of test accuracy"
    if config.seeds > 1:
        noise = max(result.scratch.test_accuracy_std, result.distilled.test_accuracy_std)
        relation = ">" if result.gain_exceeds_noise() else "<="
        line += f" ({relation} the larger std, {100 * noise:.2f})"
    lines.append(line)
    lines.append(f"{result.seconds:.0f} s on {result.device}")
    return "\n".join(lines)
