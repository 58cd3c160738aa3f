"""The ``kdlib`` command. ``kdlib distill`` runs :func:`kdlib.experiment.run_experiment`.

Examples
--------
::

    kdlib distill --fast                                   # a small run, about a minute
    kdlib distill --json results.json --plot comparison.png   # the full protocol, 5 seeds
    kdlib distill --teacher cnn --student mlp --temperature 4 --alpha 0.3 \\
        --save-student student.keras
    kdlib distill --export-litert student.tflite           # + an int8 LiteRT student
    kdlib sweep --temperatures 1 2 4 8 20 --alphas 0 0.1 0.5 0.9 --seeds 3 \\
        --json results/sweep_mlp50.json --plot sweep.png

Flags are checked before any training starts (numbers, names and output paths); a bad one
exits with status 2 and one line on stderr.

The commands live in :mod:`kdlib.cli.distill` and :mod:`kdlib.cli.sweep`, what they share in
:mod:`kdlib.cli._flags`; this module builds the parser and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# The commands' constants stay importable from here (tests and docs use kdlib.cli.*).
from kdlib.cli._flags import STUDENT_CHOICES as STUDENT_CHOICES
from kdlib.cli._flags import TEACHER_CHOICES as TEACHER_CHOICES
from kdlib.cli._flags import _OneLineParser
from kdlib.cli.distill import CALIBRATION_IMAGES as CALIBRATION_IMAGES
from kdlib.cli.distill import DEFAULT_SEEDS as DEFAULT_SEEDS
from kdlib.cli.distill import LITERT_QUANTIZE as LITERT_QUANTIZE
from kdlib.cli.distill import _distill, add_distill_parser
from kdlib.cli.distill import _export_litert as _export_litert
from kdlib.cli.sweep import _sweep, add_sweep_parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kdlib`` and its ``distill`` and ``sweep`` commands."""
    parser = _OneLineParser(prog="kdlib", description="Knowledge distillation course tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_distill_parser(commands)
    add_sweep_parser(commands)
    return parser


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
