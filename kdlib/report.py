"""What the experiment reports: result types and their text.

:func:`summarise` measures one trained model (accuracy over seeds, agreement with the
teacher, parameters, size on disk, inference time, kept epochs) with the functions of
:mod:`kdlib.measurements` (importable from here too); :class:`ExperimentResult`
holds the summaries and the paired comparisons and writes the JSON of
``kdlib distill --json``; :func:`format_table`, :func:`kdlib.conclusions.format_statistics`
and :func:`kdlib.conclusions.summary_markdown` are the text of ``kdlib distill`` and
notebook 04.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from kdlib import conclusions, stats
from kdlib.experiment_config import STOPPING_MONITOR
from kdlib.measurements import (
    INFERENCE_BATCH_SIZE,
    device_description,
    inference_ms_per_1000,
    machine_state,
    median_ms,
    predict_classes,
    run_conditions,
    saved_size_bytes,
)

if TYPE_CHECKING:
    from kdlib.experiment import Splits
    from kdlib.experiment_config import ExperimentConfig

__all__ = [
    "INFERENCE_BATCH_SIZE",
    "Artifacts",
    "ExperimentResult",
    "ModelReport",
    "device_description",
    "format_table",
    "inference_ms_per_1000",
    "machine_state",
    "median_ms",
    "predict_classes",
    "run_conditions",
    "saved_size_bytes",
    "summarise",
]


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
    (:data:`kdlib.experiment_config.COMPARISONS`), by names such as
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
        lines.append(f"distillation gain: {conclusions.gain_sentence(comparison)}")
    lines.append(f"{result.seconds:.0f} s on {result.device}")
    return "\n".join(lines)
