"""The MNIST distillation experiment, run by notebook 04 and by ``kdlib distill``.

One pipeline, two front ends: :func:`run_experiment` loads MNIST (:func:`prepare_data`),
trains a teacher (:func:`train_teacher`), then a small student three times per seed
(:func:`train_students`) from identical initial weights and with the same data order: from
the labels (scratch), from labels with label smoothing (smoothed, the control for plain
regularisation) and distilled from the teacher. It returns a
:class:`~kdlib.experiment.report.ExperimentResult`; settings are in
:mod:`~kdlib.experiment.config`, the data in :mod:`~kdlib.experiment.splits`, the training of
teacher and students in :mod:`~kdlib.experiment.training`.

The protocol: every model (the teacher too) keeps the weights of its best epoch on the
validation split, by one rule (:func:`stopping_callback`); the test set is used once, after
all training; the students are compared seed by seed (:func:`kdlib.stats.compare`: paired
differences, 95 % CI, paired t-test, McNemar's test per seed and pooled).

The students learn from cached soft targets: MNIST is not augmented here, so the teacher's
logits are the same every epoch and are computed once (:mod:`kdlib.soft_targets`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import keras

from kdlib import distribution, io, stats, validate
from kdlib.experiment.config import (
    COMPARISONS,
    STUDENT_ROLES,
    ExperimentConfig,
)
from kdlib.experiment.report import (
    INFERENCE_BATCH_SIZE,
    Artifacts,
    ExperimentResult,
    device_description,
    predict_classes,
    run_conditions,
    summarise,
)
from kdlib.experiment.splits import prepare_data
from kdlib.experiment.training import (
    best_epoch,
    teacher_soft_targets,
    train_students,
    train_teacher,
)

__all__ = ["run_experiment"]


# ------------------------------------------------------------------------------ pipeline
@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "triggered tf.function retracing" warnings while the block runs.

    Every model gets its own predict function, so predicting with several models in a row
    looks like retracing to TensorFlow; the warning is noise here.
    """
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_experiment(
    config: ExperimentConfig | None = None,
    *,
    save_student: str | os.PathLike[str] | None = None,
    data_path: str | os.PathLike[str] | None = None,
) -> ExperimentResult:
    """Run the whole protocol: data, teacher, ``config.seeds`` sets of students, report.

    Parameters
    ----------
    config : ExperimentConfig, optional
        Defaults to :meth:`ExperimentConfig.default` (full, or fast with ``KDLIB_FAST=1``).
    save_student : path, optional
        Where to save the first seed's distilled student as a ``.keras`` file; it is a
        plain Keras model that ``keras.models.load_model`` loads without kdlib.
    data_path : path, optional
        An explicit ``mnist.npz`` for :func:`kdlib.data.load_mnist`.

    Returns
    -------
    ExperimentResult
        Teacher, scratch, smoothed and distilled reports (students: mean ± std over seeds,
        kept epochs per seed), the paired comparisons, the histories of the first seed,
        the run's conditions, and the trained models in ``artifacts``.
    """
    config = config or ExperimentConfig.default()
    if save_student is not None:
        validate.output_path(save_student, suffix=".keras", name="save_student")
    distribution.check_available(config.distribution)
    # Every model is built, trained and evaluated in the scope, on every device of this
    # machine; one process, so it runs the teacher once over all the rows to cache their
    # soft targets (Keras splits each inference batch over the devices too).
    with _quiet_retracing_warnings(), distribution.scope(config.distribution) as replicas:
        return _run_pipeline(config, save_student, data_path, replicas)


def _run_pipeline(
    config: ExperimentConfig,
    save_student: str | os.PathLike[str] | None,
    data_path: str | os.PathLike[str] | None,
    replicas: int = 1,
) -> ExperimentResult:
    start = time.perf_counter()
    load_at_start = run_conditions().get("load_average_1min")
    splits = prepare_data(config, data_path)
    if config.distribution == "data-parallel":  # each device takes an equal slice
        sizes = {"training": len(splits.x_train), "validation": len(splits.x_val)}
        sizes["test"] = len(splits.x_test)
        distribution.check_even_batches(sizes, (config.batch_size, INFERENCE_BATCH_SIZE), replicas)
    if config.distribution != "none" and config.verbose != 0:
        print(
            f"distribution {config.distribution}: {replicas} replica(s), global batch "
            f"{config.batch_size}"
        )
    teacher, teacher_history = train_teacher(config, splits)
    train_targets, val_targets = teacher_soft_targets(teacher, splits)
    # Every model is trained, and its epoch chosen on validation, before the test set is
    # touched: it is used once, below.
    trained = [
        train_students(config, splits, teacher, seed, train_targets, val_targets)
        for seed in config.seed_list()
    ]
    first = trained[0]  # the first seed's models are kept for plots and saving
    if save_student is not None:
        with io.atomic_path(save_student) as temporary:  # never a half-written .keras
            first.distilled.save(temporary)

    teacher_predictions = predict_classes(teacher, splits.x_test)
    predictions = {
        name: [predict_classes(t.models()[name], splits.x_test) for t in trained]
        for name in STUDENT_ROLES
    }
    correct = {name: [p == splits.y_test for p in predictions[name]] for name in STUDENT_ROLES}
    comparisons = {
        f"{b}_vs_{a}": stats.compare(a, correct[a], b, correct[b]) for a, b in COMPARISONS
    }
    conditions = run_conditions()
    conditions["load_average_1min"] = {
        "start": load_at_start,
        "before_timing": conditions.get("load_average_1min"),
    }

    def measure(name: str, model: keras.Model, histories: list[dict[str, list[float]]]) -> Any:
        per_seed = [teacher_predictions] if name == "teacher" else predictions[name]
        return summarise(
            name,
            model,
            per_seed,
            splits.y_test,
            teacher_predictions,
            splits.x_test,
            best_epochs=[best_epoch(h) for h in histories],
            epochs_run=[len(h["loss"]) for h in histories],
        )

    reports = {"teacher": measure("teacher", teacher, [teacher_history])}
    for name in STUDENT_ROLES:
        reports[name] = measure(name, first.models()[name], [t.histories[name] for t in trained])
    conditions["load_average_1min"]["end"] = run_conditions().get("load_average_1min")
    return ExperimentResult(
        config=config,
        num_test=len(splits.y_test),
        seconds=time.perf_counter() - start,
        device=device_description(),
        histories={"teacher": teacher_history, **first.histories},
        artifacts=Artifacts(
            teacher=teacher,
            scratch=first.scratch,
            distilled=first.distilled,
            splits=splits,
            smoothed=first.smoothed,
            predictions={"teacher": [teacher_predictions], **predictions},
        ),
        comparisons=comparisons,
        conditions=conditions,
        **reports,
    )
