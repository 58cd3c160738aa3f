"""The ``kdlib`` command. ``kdlib distill`` runs :func:`kdlib.experiment.run_experiment`.

Examples
--------
::

    kdlib distill --fast                                   # a small run, about 20 s
    kdlib distill --seeds 3 --json results.json --plot comparison.png
    kdlib distill --teacher cnn --student mlp --temperature 4 --alpha 0.3 \\
        --save-student student.keras
    kdlib distill --export-litert student.tflite           # + an int8 LiteRT student
    kdlib sweep --temperatures 1 2 4 8 20 --alphas 0 0.1 0.5 0.9 --seeds 3 \\
        --json results/sweep_mlp50.json --plot sweep.png

Flags are checked before TensorFlow is even imported (numbers and names) or before any
training starts (output paths); a bad one exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from kdlib import validate

if TYPE_CHECKING:
    from kdlib.report import ExperimentResult

T = TypeVar("T")

# The names of kdlib.experiment.TEACHERS and STUDENTS (a test keeps them in step), so that
# `kdlib --help` and flag errors answer without importing TensorFlow.
TEACHER_CHOICES = ("cnn", "mlp")
STUDENT_CHOICES = ("mlp", "cnn")
# kdlib.export.QUANTIZE_CHOICES, with float32 standing for None.
LITERT_QUANTIZE = ("int8", "dynamic", "float32")
#: Training images that calibrate an int8 export (--litert-quantize int8).
CALIBRATION_IMAGES = 500


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``kdlib distill: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _flag(
    check: Callable[..., T], parse: Callable[[str], Any], **kwargs: Any
) -> Callable[[str], T]:
    """An argparse ``type``: parse the text, then check it with a :mod:`kdlib.validate` rule."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check refuses the text and quotes it
        try:
            return check(value, **kwargs)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kdlib`` and its ``distill`` command."""
    parser = _OneLineParser(prog="kdlib", description="Knowledge distillation course tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    distill = commands.add_parser(
        "distill",
        help="train a teacher, then a student from scratch and by distillation; compare",
        description=(
            "Train a teacher on MNIST, then the same small student twice from identical "
            "initial weights: once from the labels alone (scratch) and once distilled from "
            "the teacher. Prints a comparison table. Defaults are the full configuration, "
            "or the fast one with --fast or KDLIB_FAST=1."
        ),
    )
    distill.add_argument(
        "--teacher",
        choices=TEACHER_CHOICES,
        default="cnn",
        help="teacher architecture (default: cnn)",
    )
    distill.add_argument(
        "--student",
        choices=STUDENT_CHOICES,
        default="mlp",
        help="student architecture (default: mlp, 50 hidden units)",
    )
    distill.add_argument(
        "--temperature",
        type=_flag(validate.temperature, float, name="--temperature"),
        default=None,
        help="distillation temperature T > 0 (default: 4)",
    )
    distill.add_argument(
        "--alpha",
        type=_flag(validate.alpha, float, name="--alpha"),
        default=None,
        help="weight of the hard-label loss, in [0, 1] (default: 0.3)",
    )
    distill.add_argument(
        "--epochs",
        type=_flag(validate.positive_int, int, name="--epochs"),
        default=None,
        help="epochs of each student (default: 30, fast 3)",
    )
    distill.add_argument(
        "--teacher-epochs",
        type=_flag(validate.positive_int, int, name="--teacher-epochs"),
        default=None,
        help="epochs of the teacher (default: 8, fast 2)",
    )
    distill.add_argument(
        "--batch-size",
        type=_flag(validate.positive_int, int, name="--batch-size"),
        default=None,
        help="mini-batch size (default: 128)",
    )
    distill.add_argument(
        "--seeds",
        type=_flag(validate.positive_int, int, name="--seeds"),
        default=1,
        help="train the students N times with seeds seed..seed+N-1 and "
        "report mean ± std (default: 1)",
    )
    distill.add_argument(
        "--seed",
        type=_flag(validate.non_negative_int, int, name="--seed"),
        default=0,
        help="first seed (default: 0)",
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
        default="int8",
        help="form of the --export-litert file: int8 (full-integer, calibrated on 500 "
        "training images; default), dynamic (int8 weights) or float32",
    )
    _add_sweep_parser(commands)
    return parser


def _add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="train a temperature x alpha x seed grid of small students at once; compare",
        description=(
            "Train a teacher on MNIST, then every student of a temperature x alpha grid, for "
            "each seed, plus a scratch baseline per seed, all stacked into one model (the "
            "same gradients as separate trainings, several times faster). Validation "
            "accuracy selects (T, alpha); the test accuracy of that cell and of scratch is "
            "reported. Defaults: the full grid 1 2 4 8 20 x 0 0.1 0.5 0.9 x 3 seeds, or a "
            "2 x 2 x 2 grid on a data subset with --fast or KDLIB_FAST=1."
        ),
    )
    positive = _flag(validate.positive_int, int, name="--seeds")
    sweep.add_argument(
        "--temperatures",
        type=_flag(validate.temperature, float, name="--temperatures"),
        nargs="+",
        default=None,
        metavar="T",
        help="temperatures (default: 1 2 4 8 20)",
    )
    sweep.add_argument(
        "--alphas",
        type=_flag(validate.alpha, float, name="--alphas"),
        nargs="+",
        default=None,
        metavar="ALPHA",
        help="weights of the hard-label loss (default: 0 0.1 0.5 0.9)",
    )
    sweep.add_argument(
        "--seeds", type=positive, default=None, help="seeds per cell (default: 3, fast 2)"
    )
    sweep.add_argument(
        "--seed",
        type=_flag(validate.non_negative_int, int, name="--seed"),
        default=0,
        help="first seed (default: 0)",
    )
    sweep.add_argument(
        "--hidden",
        type=_flag(validate.positive_int, int, name="--hidden"),
        nargs="+",
        default=[50],
        metavar="UNITS",
        help="hidden units of the student MLP (default: 50)",
    )
    sweep.add_argument(
        "--teacher",
        choices=TEACHER_CHOICES,
        default="cnn",
        help="teacher architecture (default: cnn)",
    )
    sweep.add_argument(
        "--epochs",
        type=_flag(validate.positive_int, int, name="--epochs"),
        default=None,
        help="epochs of every student (default: 30, fast 3)",
    )
    sweep.add_argument(
        "--teacher-epochs",
        type=_flag(validate.positive_int, int, name="--teacher-epochs"),
        default=None,
        help="epochs of the teacher (default: 8, fast 2)",
    )
    sweep.add_argument(
        "--load-teacher",
        metavar="PATH",
        default=None,
        help="use this trained teacher (.keras) instead of training one",
    )
    sweep.add_argument(
        "--save-teacher",
        metavar="PATH",
        default=None,
        help="save the trained teacher as a .keras file, to reuse it",
    )
    sweep.add_argument(
        "--fast", action="store_true", help="fast configuration, the same as KDLIB_FAST=1"
    )
    sweep.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write one record per (T, alpha, seed) and the scratch baseline per seed as JSON",
    )
    sweep.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="write a PNG heatmap of validation accuracy over T x alpha",
    )


@contextlib.contextmanager
def _fast_mode(enabled: bool) -> Iterator[None]:
    """Set ``KDLIB_FAST=1`` while the block runs if ``enabled`` (restored afterwards)."""
    if not enabled:
        yield
        return
    from kdlib.config import FAST_ENV_VAR

    previous = os.environ.get(FAST_ENV_VAR)
    os.environ[FAST_ENV_VAR] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[FAST_ENV_VAR]
        else:
            os.environ[FAST_ENV_VAR] = previous


def _fail(message: str, command: str = "distill") -> NoReturn:
    """Exit with status 2 and one line on stderr, as argparse does for a bad flag."""
    sys.stderr.write(f"kdlib {command}: error: {message}\n")
    raise SystemExit(2)


def _distill(args: argparse.Namespace) -> int:
    for flag, path, suffix in (
        ("--json", args.json, None),
        ("--plot", args.plot, ".png"),
        ("--save-student", args.save_student, ".keras"),
        ("--export-litert", args.export_litert, ".tflite"),
    ):
        if path is not None:
            try:
                validate.output_path(path, suffix=suffix, name=flag)
            except ValueError as err:
                _fail(str(err))
    # Keras and TensorFlow are imported only once every flag and path looks sane.
    from kdlib import experiment, report

    _check_litert(args.export_litert)
    with _fast_mode(args.fast):
        try:
            config = experiment.ExperimentConfig.default(
                teacher=args.teacher,
                student=args.student,
                temperature=args.temperature,
                alpha=args.alpha,
                epochs=args.epochs,
                teacher_epochs=args.teacher_epochs,
                batch_size=args.batch_size,
                seeds=args.seeds,
                seed=args.seed,
            )
        except ValueError as err:
            _fail(str(err))
        result = experiment.run_experiment(config, save_student=args.save_student)

    print()
    print(report.format_table(result))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_json_dict(), f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        import matplotlib.pyplot as plt

        from kdlib.experiment_plots import plot_comparison

        reports = (result.teacher, result.scratch, result.distilled)
        fig = plot_comparison(
            [r.name for r in reports],
            [r.test_accuracy for r in reports],
            stds=[r.test_accuracy_std for r in reports],
            params=[r.params for r in reports],
            title=f"MNIST, T = {config.temperature:g}, alpha = {config.alpha:g}, "
            f"{config.seeds} seed(s)",
        )
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"wrote {args.plot}")
    if args.save_student is not None:
        print(f"wrote {args.save_student} (loads with keras.models.load_model, no kdlib needed)")
    if args.export_litert is not None:
        _export_litert(result, args.export_litert, args.litert_quantize)
    return 0


def _check_litert(path: str | None) -> None:
    """Before training: can this environment convert and run LiteRT files (if asked to)?"""
    if path is None:
        return
    from kdlib import export

    try:
        export.check_litert_available()
    except (RuntimeError, ImportError) as err:
        _fail(f"--export-litert: {err}")


def _export_litert(result: ExperimentResult, path: str, form: str) -> None:
    """Write the first seed's distilled student to ``path`` and print how it scores."""
    import numpy as np

    from kdlib import export

    art = result.artifacts
    quantize = None if form == "float32" else form
    calibration = art.splits.x_train[:CALIBRATION_IMAGES] if form == "int8" else None
    export.to_litert(art.distilled, path, quantize=quantize, representative_data=calibration)
    scores = export.evaluate_litert(path, art.splits.x_test, art.splits.y_test)
    keras_logits = art.distilled.predict(art.splits.x_test, batch_size=1000, verbose=0)
    agreement = float(np.mean(scores["predictions"] == np.argmax(keras_logits, axis=-1)))
    print(
        f"wrote {path} (LiteRT {form}, {os.path.getsize(path) / 1024:.1f} KB): test accuracy "
        f"{100 * scores['accuracy']:.2f} %, {scores['errors']} errors, same class as the Keras "
        f"student on {100 * agreement:.2f} % of the test images"
    )


def _sweep(args: argparse.Namespace) -> int:
    if args.load_teacher is not None and not os.path.isfile(args.load_teacher):
        _fail(
            f"--load-teacher {args.load_teacher!r}: no such file; give a .keras teacher saved "
            "with --save-teacher, or leave the flag out to train one.",
            "sweep",
        )
    for flag, path, suffix in (
        ("--json", args.json, None),
        ("--plot", args.plot, ".png"),
        ("--save-teacher", args.save_teacher, ".keras"),
    ):
        if path is not None:
            try:
                validate.output_path(path, suffix=suffix, name=flag)
            except ValueError as err:
                _fail(str(err), "sweep")
    # Keras and TensorFlow are imported only once every flag and path looks sane.
    from kdlib import sweep

    with _fast_mode(args.fast):
        try:
            config = sweep.SweepConfig.default(
                temperatures=args.temperatures,
                alphas=args.alphas,
                hidden=args.hidden,
                teacher=args.teacher,
                epochs=args.epochs,
                teacher_epochs=args.teacher_epochs,
                seeds=args.seeds,
                seed=args.seed,
                verbose=2,
            )
        except ValueError as err:
            _fail(str(err), "sweep")
        teacher = None
        if args.load_teacher is not None:
            import keras

            teacher = keras.models.load_model(args.load_teacher)
        result = sweep.run_sweep(config, teacher=teacher)
        payload = result.to_json_dict()

    print()
    print(sweep.format_summary(result))
    if args.save_teacher is not None:
        result.teacher_model.save(args.save_teacher)
        print(f"wrote {args.save_teacher}")
    if args.json is not None:
        sweep.write_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.plot is not None:
        from kdlib.sweep_plots import plot_sweep_heatmap

        plot_sweep_heatmap(payload).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdlib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "distill":
        return _distill(args)
    if args.command == "sweep":
        return _sweep(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
