"""The ``kdlib sweep`` command: its flags, their checks, the run of
:func:`kdlib.sweep.run_sweep` and its outputs (teacher, JSON records, heatmap)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from kdlib import validate
from kdlib.cli._flags import TEACHER_CHOICES, _fail, _flag
from kdlib.experiment.config import FAST_SETTINGS, ExperimentConfig
from kdlib.sweep.grid import FAST_GRID, FULL_GRID


def _grid(name: str) -> str:
    """``1 2 4, fast 2 8``: a setting of the full grid and of the fast one."""

    def words(value: object) -> str:
        return " ".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"

    return f"{words(FULL_GRID[name])}, fast {words(FAST_GRID[name])}"


def add_sweep_parser(commands: Any) -> None:
    """Add the ``sweep`` command and its flags to ``kdlib``'s subparsers."""
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
        help=f"temperatures (default: {_grid('temperatures')})",
    )
    sweep.add_argument(
        "--alphas",
        type=_flag(validate.alpha, float, name="--alphas"),
        nargs="+",
        default=None,
        metavar="ALPHA",
        help=f"weights of the hard-label loss (default: {_grid('alphas')})",
    )
    sweep.add_argument(
        "--seeds", type=positive, default=None, help=f"seeds per cell (default: {_grid('seeds')})"
    )
    sweep.add_argument(
        "--seed",
        type=_flag(validate.non_negative_int, int, name="--seed"),
        default=ExperimentConfig.seed,
        help=f"first seed (default: {ExperimentConfig.seed})",
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
        default=ExperimentConfig.teacher,
        help=f"teacher architecture (default: {ExperimentConfig.teacher})",
    )
    sweep.add_argument(
        "--epochs",
        type=_flag(validate.positive_int, int, name="--epochs"),
        default=None,
        help=f"epochs of every student (default: {_grid('epochs')})",
    )
    sweep.add_argument(
        "--teacher-epochs",
        type=_flag(validate.positive_int, int, name="--teacher-epochs"),
        default=None,
        help="epochs of the teacher (default: "
        f"{ExperimentConfig.teacher_epochs}, fast {FAST_SETTINGS['teacher_epochs']})",
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
    # Nothing trains until every flag and path looks sane.
    from kdlib.sweep import grid as sweep

    try:
        config = sweep.SweepConfig.default(
            fast=args.fast or None,
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
    from kdlib import io  # every file atomically: the old one or the complete new one

    if args.save_teacher is not None:
        with io.atomic_path(args.save_teacher) as tmp:
            result.teacher_model.save(tmp)
        print(f"wrote {args.save_teacher}")
    if args.json is not None:
        io.write_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.plot is not None:
        from kdlib.sweep.plots import plot_sweep_heatmap

        with io.atomic_path(args.plot) as tmp:
            plot_sweep_heatmap(payload).savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        print(f"wrote {args.plot}")
    return 0
