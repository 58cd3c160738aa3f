"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

:func:`run_experiment` (:mod:`~kdlib.experiment.pipeline`) prepares the data
(:mod:`~kdlib.experiment.splits`), trains a teacher and three students per seed
(:mod:`~kdlib.experiment.training`) with the settings of :mod:`~kdlib.experiment.config`, and
returns a :class:`~kdlib.experiment.report.ExperimentResult`; :mod:`~kdlib.experiment.report`
measures and tabulates it, :mod:`~kdlib.experiment.conclusions` puts it in words and
:mod:`~kdlib.experiment.plots` draws it.
"""

from kdlib._deprecated import forward
from kdlib.experiment.config import STUDENTS, TEACHERS, ExperimentConfig
from kdlib.experiment.pipeline import run_experiment
from kdlib.experiment.report import ExperimentResult, predict_classes
from kdlib.experiment.splits import Splits, prepare_data
from kdlib.experiment.training import (
    teacher_soft_targets,
    train_students,
    train_teacher,
    twin_students,
)

__all__ = [
    "STUDENTS",
    "TEACHERS",
    "ExperimentConfig",
    "ExperimentResult",
    "Splits",
    "predict_classes",
    "prepare_data",
    "run_experiment",
    "teacher_soft_targets",
    "train_students",
    "train_teacher",
    "twin_students",
]

# kdlib 0.2.0's ``kdlib.experiment`` module also held these; they go in 0.4.0.
__getattr__ = forward(
    __name__,
    {
        **dict.fromkeys(
            ["COMPARISONS", "MIN_COMPRESSION", "STOPPING_MONITOR", "STUDENT_ROLES"],
            "kdlib.experiment.config",
        ),
        **dict.fromkeys(["INFERENCE_BATCH_SIZE", "Artifacts"], "kdlib.experiment.report"),
        **dict.fromkeys(
            [
                "TrainedTwins",
                "best_epoch",
                "build_teacher",
                "compression_ratio",
                "stopping_callback",
            ],
            "kdlib.experiment.training",
        ),
    },
)
