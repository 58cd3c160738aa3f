"""The ``kdlib distill`` command: its flags, their checks, the run of
:func:`kdlib.experiment.run_experiment`, its outputs and the optional LiteRT export step."""

from __future__ import annotations

import argparse
import os
import uuid
from typing import TYPE_CHECKING, Any

from kdlib import validate
from kdlib.cli._flags import STUDENT_CHOICES, TEACHER_CHOICES, _fail, _flag
from kdlib.experiment.config import DISTRIBUTIONS, FAST_SETTINGS, ExperimentConfig

if TYPE_CHECKING:
    from kdlib.experiment.report import ExperimentResult

#: The full run's number of seeds, the most a default run trains (--seed is checked with it).
DEFAULT_SEEDS = ExperimentConfig.seeds


def _default(name: str, note: str = "") -> str:
    """``default: 4`` (and ``, fast 2``), read from :class:`ExperimentConfig`."""
    text = f"default: {getattr(ExperimentConfig, name):g}{note}"
    return text + (f", fast {FAST_SETTINGS[name]:g}" if name in FAST_SETTINGS else "")


# kdlib.export.QUANTIZE_CHOICES, with float32 standing for None.
LITERT_QUANTIZE = ("int8", "dynamic", "float32")
#: Training images that calibrate an int8 export (--litert-quantize int8).
CALIBRATION_IMAGES = 500


def add_distill_parser(commands: Any) -> None:
    """Add the ``distill`` command and its flags to ``kdlib``'s subparsers."""
    distill = commands.add_parser(
        "distill",
        help="train a teacher, then a student from scratch, with label smoothing and by "
        "distillation; compare them over paired seeds",
        description=(
            "Train a teacher on MNIST, then the same small student three times per seed "
            "from identical initial weights and batches: from the labels alone (scratch), "
            "from labels with label smoothing (smoothed, a control for regularisation) and "
            "distilled from the teacher. Every model keeps its best validation epoch; the "
            "test set is used once. Prints a comparison table and paired statistics "
            "(per-seed differences, 95 % CI, paired t-test, McNemar). Defaults are the "
            "full configuration, or the fast one with --fast or KDLIB_FAST=1."
        ),
    )
    distill.add_argument(
        "--teacher",
        choices=TEACHER_CHOICES,
        default=ExperimentConfig.teacher,
        help=f"teacher architecture (default: {ExperimentConfig.teacher})",
    )
    distill.add_argument(
        "--student",
        choices=STUDENT_CHOICES,
        default=ExperimentConfig.student,
        help=f"student architecture (default: {ExperimentConfig.student}, 50 hidden units)",
    )
    distill.add_argument(
        "--temperature",
        type=_flag(validate.temperature, float, name="--temperature"),
        default=None,
        help=f"distillation temperature T > 0 ({_default('temperature')})",
    )
    distill.add_argument(
        "--alpha",
        type=_flag(validate.alpha, float, name="--alpha"),
        default=None,
        help=f"weight of the hard-label loss, in [0, 1] ({_default('alpha')})",
    )
    distill.add_argument(
        "--epochs",
        type=_flag(validate.positive_int, int, name="--epochs"),
        default=None,
        help=f"most epochs of each student ({_default('epochs')})",
    )
    distill.add_argument(
        "--teacher-epochs",
        type=_flag(validate.positive_int, int, name="--teacher-epochs"),
        default=None,
        help=f"most epochs of the teacher ({_default('teacher_epochs')})",
    )
    distill.add_argument(
        "--patience",
        type=_flag(validate.positive_int, int, name="--patience"),
        default=None,
        help="stop a model after N epochs without a better validation accuracy, keeping "
        f"its best epoch ({_default('patience')})",
    )
    distill.add_argument(
        "--label-smoothing",
        type=_flag(validate.label_smoothing, float, name="--label-smoothing"),
        default=None,
        help=f"label smoothing of the control student, in [0, 1) ({_default('label_smoothing')})",
    )
    distill.add_argument(
        "--batch-size",
        type=_flag(validate.positive_int, int, name="--batch-size"),
        default=None,
        help=f"mini-batch size ({_default('batch_size')})",
    )
    distill.add_argument(
        "--seeds",
        type=_flag(validate.positive_int, int, name="--seeds"),
        default=None,
        help=f"train the students N times with seeds seed..seed+N-1, paired ({_default('seeds')})",
    )
    distill.add_argument(
        "--seed",
        type=_flag(validate.seed, int, name="--seed"),
        default=ExperimentConfig.seed,
        help=f"first seed ({_default('seed')})",
    )
    distill.add_argument(
        "--distribution",
        choices=DISTRIBUTIONS,
        default=ExperimentConfig.distribution,
        help="spread every model over this machine's devices: mirrored "
        "(tf.distribute.MirroredStrategy, TensorFlow) or data-parallel "
        "(keras.distribution.DataParallel, JAX); --batch-size stays the global batch "
        f"(default: {ExperimentConfig.distribution}; docs/scale_out.md)",
    )
    distill.add_argument(
        "--fast",
        action="store_true",
        help="fast configuration (a data subset, few epochs), the same as KDLIB_FAST=1",
    )
    distill.add_argument(
        "--json", metavar="PATH", default=None, help="write the results as JSON to PATH"
    )
    distill.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="write a PNG bar chart of the comparison to PATH",
    )
    distill.add_argument(
        "--save-student",
        metavar="PATH",
        default=None,
        help="save the distilled student (first seed) as a .keras file",
    )
    distill.add_argument(
        "--export-litert",
        metavar="PATH",
        default=None,
        help="export the distilled student (first seed) to LiteRT as a .tflite file and "
        "report its test accuracy",
    )
    distill.add_argument(
        "--litert-quantize",
        choices=LITERT_QUANTIZE,
        default=None,
        help="form of the --export-litert file: int8 (full-integer, calibrated on 500 "
        "training images; default), dynamic (int8 weights) or float32",
    )


def _check_flags(args: argparse.Namespace) -> None:
    """Every check that needs more than one flag, or the file system; before any training."""
    outputs = {
        "--json": args.json,
        "--plot": args.plot,
        "--save-student": args.save_student,
        "--export-litert": args.export_litert,
    }
    suffixes = {
        "--json": None,
        "--plot": ".png",
        "--save-student": ".keras",
        "--export-litert": ".tflite",
    }
    if args.litert_quantize is not None and args.export_litert is None:
        _fail(
            f"--litert-quantize {args.litert_quantize} sets the form of the --export-litert "
            "file, but there is no --export-litert; add --export-litert student.tflite, or "
            "drop --litert-quantize."
        )
    try:
        count = DEFAULT_SEEDS if args.seeds is None else args.seeds
        validate.seed(args.seed, "--seed", count=count)
        for flag, suffix in suffixes.items():
            if outputs[flag] is not None:
                validate.output_path(outputs[flag], suffix=suffix, name=flag)
        validate.distinct_paths(outputs)
    except ValueError as err:
        _fail(str(err))


def _distill(args: argparse.Namespace) -> int:
    _check_flags(args)
    # Nothing trains until every flag and path looks sane.
    from kdlib import experiment, io
    from kdlib.experiment import conclusions, report

    _check_litert(args.export_litert)
    _check_distribution(args.distribution)
    # Every output goes to a temporary file first (the student while it is saved, the rest
    # at the end) and all are renamed together when the run is complete
    # (kdlib.io.OutputSet): an interrupted run leaves the previous run's files, never a mix
    # of two runs. The JSON and the plot also carry one run id. "wrote" is said only once
    # every file is in place.
    run_id = uuid.uuid4().hex
    messages = []
    with io.OutputSet() as outputs:
        staged_student = None if args.save_student is None else outputs.stage(args.save_student)
        try:
            config = experiment.ExperimentConfig.default(
                fast=args.fast or None,
                teacher=args.teacher,
                student=args.student,
                temperature=args.temperature,
                alpha=args.alpha,
                label_smoothing=args.label_smoothing,
                epochs=args.epochs,
                teacher_epochs=args.teacher_epochs,
                patience=args.patience,
                batch_size=args.batch_size,
                seeds=args.seeds,
                seed=args.seed,
                distribution=args.distribution,
            )
        except ValueError as err:
            _fail(str(err))
        result = experiment.run_experiment(config, save_student=staged_student)
        print()
        print(report.format_table(result))
        print()
        print(conclusions.format_statistics(result))
        if args.json is not None:
            text = io.json_text({**result.to_json_dict(), "run_id": run_id})
            outputs.stage(args.json).write_text(text, encoding="utf-8")
            messages.append(f"wrote {args.json}")
        if args.plot is not None:
            _save_plot(result, config, outputs.stage(args.plot), run_id)
            messages.append(f"wrote {args.plot}")
        if args.save_student is not None:
            messages.append(
                f"wrote {args.save_student} (loads with keras.models.load_model, no kdlib needed)"
            )
        if args.export_litert is not None:
            staged = outputs.stage(args.export_litert)
            form = args.litert_quantize or "int8"
            messages.append(_export_litert(result, staged, form, shown=args.export_litert))
    if messages:
        print("\n".join(messages))
    return 0


def _save_plot(result: Any, config: Any, path: Any, run_id: str) -> None:
    import matplotlib.pyplot as plt

    from kdlib.experiment.plots import plot_comparison

    reports = (result.teacher, *result.students())
    fig = plot_comparison(
        [r.name for r in reports],
        [r.test_accuracies for r in reports],
        params=[r.params for r in reports],
        title=f"MNIST, T = {config.temperature:g}, alpha = {config.alpha:g}, "
        f"{config.seeds} seed(s)",
    )
    try:
        fig.savefig(path, dpi=120, format="png", metadata={"kdlib run_id": run_id})
    finally:
        plt.close(fig)


def _check_distribution(name: str) -> None:
    """Before training: can this backend run ``--distribution name``?"""
    from kdlib import distribution

    try:
        distribution.check_available(name)
    except ValueError as err:
        _fail(f"--distribution: {err}")


def _check_litert(path: str | None) -> None:
    """Before training: can this environment convert and run LiteRT files (if asked to)?"""
    if path is None:
        return
    from kdlib import export

    try:
        export.check_litert_available()
    except (RuntimeError, ImportError) as err:
        _fail(f"--export-litert: {err}")


def _export_litert(
    result: ExperimentResult, path: Any, form: str, shown: str | None = None
) -> str:
    """Write the first seed's distilled student to ``path``; return the line that says how
    it scores (``shown``: the final path, when ``path`` is a staged temporary file)."""
    import numpy as np

    from kdlib import export

    art = result.artifacts
    quantize = None if form == "float32" else form
    calibration = art.splits.x_train[:CALIBRATION_IMAGES] if form == "int8" else None
    export.to_litert(art.distilled, path, quantize=quantize, representative_data=calibration)
    scores = export.evaluate_litert(path, art.splits.x_test, art.splits.y_test)
    keras_logits = art.distilled.predict(art.splits.x_test, batch_size=1000, verbose=0)
    agreement = float(np.mean(scores["predictions"] == np.argmax(keras_logits, axis=-1)))
    size_kb = os.path.getsize(path) / 1024
    return (
        f"wrote {shown or path} (LiteRT {form}, {size_kb:.1f} KB): test accuracy "
        f"{100 * scores['accuracy']:.2f} %, {scores['errors']} errors, same class as the Keras "
        f"student on {100 * agreement:.2f} % of the test images"
    )
