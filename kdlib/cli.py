"""The ``kdlib`` command. ``kdlib distill`` runs :func:`kdlib.experiment.run_experiment`.

Examples
--------
::

    kdlib distill --fast                                   # a small run, about a minute
    kdlib distill --json results.json --plot comparison.png   # the full protocol, 5 seeds
    kdlib distill --teacher cnn --student mlp --temperature 4 --alpha 0.3 \\
        --save-student student.keras

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
from typing import Any, NoReturn, TypeVar

from kdlib import validate

T = TypeVar("T")

# The names of kdlib.experiment.TEACHERS and STUDENTS (a test keeps them in step), so that
# `kdlib --help` and flag errors answer without importing TensorFlow.
TEACHER_CHOICES = ("cnn", "mlp")
STUDENT_CHOICES = ("mlp", "cnn")


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
        help="most epochs of each student (default: 40, fast 3)",
    )
    distill.add_argument(
        "--teacher-epochs",
        type=_flag(validate.positive_int, int, name="--teacher-epochs"),
        default=None,
        help="most epochs of the teacher (default: 8, fast 2)",
    )
    distill.add_argument(
        "--patience",
        type=_flag(validate.positive_int, int, name="--patience"),
        default=None,
        help="stop a model after N epochs without a better validation accuracy, keeping "
        "its best epoch (default: 5)",
    )
    distill.add_argument(
        "--label-smoothing",
        type=_flag(validate.label_smoothing, float, name="--label-smoothing"),
        default=None,
        help="label smoothing of the control student, in [0, 1) (default: 0.1)",
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
        default=None,
        help="train the students N times with seeds seed..seed+N-1, paired (default: 5, fast 2)",
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
        help="write a PNG chart of the comparison (every seed, and sizes) to PATH",
    )
    distill.add_argument(
        "--save-student",
        metavar="PATH",
        default=None,
        help="save the distilled student (first seed) as a .keras file",
    )
    return parser


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


def _fail(message: str) -> NoReturn:
    """Exit with status 2 and one line on stderr, as argparse does for a bad flag."""
    sys.stderr.write(f"kdlib distill: error: {message}\n")
    raise SystemExit(2)


def _distill(args: argparse.Namespace) -> int:
    for flag, path, suffix in (
        ("--json", args.json, None),
        ("--plot", args.plot, ".png"),
        ("--save-student", args.save_student, ".keras"),
    ):
        if path is not None:
            try:
                validate.output_path(path, suffix=suffix, name=flag)
            except ValueError as err:
                _fail(str(err))
    # Keras and TensorFlow are imported only once every flag and path looks sane.
    from kdlib import conclusions, experiment, report

    with _fast_mode(args.fast):
        try:
            config = experiment.ExperimentConfig.default(
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
            )
        except ValueError as err:
            _fail(str(err))
        result = experiment.run_experiment(config, save_student=args.save_student)

    print()
    print(report.format_table(result))
    print()
    print(conclusions.format_statistics(result))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_json_dict(), f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        import matplotlib.pyplot as plt

        from kdlib.experiment_plots import plot_comparison

        reports = (result.teacher, *result.students())
        fig = plot_comparison(
            [r.name for r in reports],
            [r.test_accuracies for r in reports],
            params=[r.params for r in reports],
            title=f"MNIST, T = {config.temperature:g}, alpha = {config.alpha:g}, "
            f"{config.seeds} seed(s)",
        )
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"wrote {args.plot}")
    if args.save_student is not None:
        print(f"wrote {args.save_student} (loads with keras.models.load_model, no kdlib needed)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdlib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "distill":
        return _distill(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
