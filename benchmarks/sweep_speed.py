"""Seconds for a temperature x alpha x seed grid of small students: stacked vs one at a time.

Both ways train the same students (a scratch baseline per seed plus one distilled student per
(T, alpha, seed)) from the same initial weights, on the same data with the same cached soft
targets, optimizer and batch size, in one run on one machine:

- one at a time: a ``kdlib.Distiller`` per student, ``fit`` for all epochs, as
  ``kdlib.experiment`` trains its students;
- stacked: one :class:`kdlib.sweep.stacked.StackedStudents` holding every student, one ``fit``.

Times include building, compiling and tracing, which a user pays too. It then breaks the
time down: the first epoch (tracing) against later ones, the cost of a step of a stack
holding a single student (the fixed cost per step: Python, ``fit``'s loop, kernel launches),
and the arithmetic rate of the full stack. The teacher's logits are random numbers: the
cost of training does not depend on their values.

    python benchmarks/sweep_speed.py                  # reduced grid, full MNIST, 2 epochs
    python benchmarks/sweep_speed.py --temperatures 1 2 4 8 20 --alphas 0 0.1 0.5 0.9 \\
        --seeds 3 --epochs 1                          # the full grid's students, one epoch
    python benchmarks/sweep_speed.py --fast --json speed.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0, 8.0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[50],
        help="hidden units of each student (default: 50)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--examples",
        type=int,
        default=None,
        help="training images (default: 55,000; 5,000 with --fast)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="smoke test (same as KDLIB_FAST=1): 5,000 images, 1 epoch, "
        "2 temperatures x 1 alpha x 1 seed",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    for name in ("seeds", "epochs", "batch_size"):
        if getattr(args, name) <= 0:
            parser.error(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    if args.fast:
        os.environ["KDLIB_FAST"] = "1"
        args.temperatures, args.alphas, args.seeds, args.epochs = [2.0, 8.0], [0.5], 1, 1
    return args


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (what ``uptime`` prints): how busy the machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def grid(args: argparse.Namespace) -> list[tuple[float, float, int]]:
    """(temperature, alpha, seed) of every student: per seed a scratch one (alpha = 1), then
    the distilled ones."""
    students = []
    for seed in range(args.seeds):
        students.append((1.0, 1.0, seed))
        students += [(t, a, seed) for t in args.temperatures for a in args.alphas]
    return students


class EpochClock:
    """A Keras callback factory that records each epoch's wall-clock seconds."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def callback(self) -> Any:
        import keras

        clock = self

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                clock.seconds.append(time.perf_counter() - self.start)

        return Clock()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras
    import numpy as np

    from kdlib import Distiller, config, data, models
    from kdlib.soft_targets import LABELS_KEY, TEACHER_LOGITS_KEY
    from kdlib.sweep.stacked import StackedStudents

    (x_all, y_all), _ = data.load_mnist()
    n = min(args.examples or config.pick(full=55_000, fast=5_000), len(x_all))
    x, y = data.scale_images(x_all[:n]), y_all[:n].astype("int32")
    logits = (3.0 * np.random.default_rng(0).normal(size=(n, 10))).astype("float32")
    targets = {LABELS_KEY: y, TEACHER_LOGITS_KEY: logits}
    students = grid(args)
    hidden = tuple(args.hidden)
    inits = {}
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        inits[seed] = models.mlp(hidden=hidden).get_weights()
    fit = {"batch_size": args.batch_size, "epochs": args.epochs, "verbose": 0}
    print(
        f"{len(students)} students (MLP {'-'.join(map(str, hidden))}; {args.seeds} seed(s) x "
        f"(1 scratch + {len(args.temperatures)} T x {len(args.alphas)} alpha)), "
        f"{args.epochs} epoch(s), {n:,} images, batch {args.batch_size}, Adam; "
        f"{os.cpu_count()} CPUs; load average {load_average()}",
        flush=True,
    )

    def stacked(
        which: list[tuple[float, float, int]], epochs: int = args.epochs
    ) -> tuple[float, EpochClock, Any]:
        start = time.perf_counter()
        stack = StackedStudents([t for t, _, _ in which], [a for _, a, _ in which], hidden=hidden)
        for i, (_, _, seed) in enumerate(which):
            stack.set_student_weights(i, inits[seed])
        stack.compile(optimizer=keras.optimizers.Adam(1e-3))
        clock = EpochClock()
        stack.fit(x, targets, callbacks=[clock.callback()], **{**fit, "epochs": epochs})
        return time.perf_counter() - start, clock, stack

    load_before = load_average()
    stacked_seconds, stacked_clock, stack = stacked(students)
    print(f"stacked:        {stacked_seconds:7.1f} s   (load {load_average()})", flush=True)

    separate_seconds, first_epochs, later_epochs, separate_accuracy = 0.0, [], [], []
    for temperature, alpha, seed in students:
        start = time.perf_counter()
        student = models.mlp(hidden=hidden)
        student.set_weights(inits[seed])
        distiller = Distiller(teacher=models.mlp(hidden=(8,), name="teacher"), student=student)
        distiller.compile(
            optimizer=keras.optimizers.Adam(1e-3), alpha=alpha, temperature=temperature
        )
        clock = EpochClock()
        distiller.fit(x, targets, callbacks=[clock.callback()], **fit)
        separate_seconds += time.perf_counter() - start
        first_epochs.append(clock.seconds[0])
        later_epochs += clock.seconds[1:]
        separate_accuracy.append(
            float(
                np.mean(
                    np.argmax(student.predict(x[:5000], batch_size=1000, verbose=0), axis=-1)
                    == y[:5000]
                )
            )
        )
    print(f"one at a time:  {separate_seconds:7.1f} s   (load {load_average()})", flush=True)
    speedup = separate_seconds / stacked_seconds

    # Where the time goes: a stack of one student pays the fixed cost per step alone.
    _, single_clock, _ = stacked(students[:1], epochs=2)  # the 2nd epoch is past tracing
    steps = -(-n // args.batch_size)
    macs = sum(a * b for a, b in zip((784, *hidden), (*hidden, 10)))  # multiply-adds/image
    flops = 6.0 * macs * n * len(students)  # forward 2, backward (weight gradients) 4
    stack_epoch = stacked_clock.seconds[-1]  # with one epoch, tracing included
    stacked_accuracy = stack.accuracies(x[:5000], y[:5000])

    print()
    print(f"{'':34s}{'stacked':>12s}{'one at a time':>16s}")
    print(f"{'total seconds':34s}{stacked_seconds:12.1f}{separate_seconds:16.1f}")
    print(
        f"{'seconds per student-epoch':34s}"
        f"{stacked_seconds / len(students) / args.epochs:12.3f}"
        f"{separate_seconds / len(students) / args.epochs:16.3f}"
    )
    print(f"speed-up: {speedup:.1f}x ({len(students)} students, {args.epochs} epoch(s))")
    steady = None
    if later_epochs and len(stacked_clock.seconds) > 1:
        # Past the first epoch (tracing): the ratio that long runs approach.
        steady = (
            float(np.mean(later_epochs))
            * len(students)
            / float(np.mean(stacked_clock.seconds[1:]))
        )
        print(f"speed-up per epoch after the first (what long runs approach): {steady:.1f}x")
    print()
    print("Where the time goes")
    print(
        f"- one at a time, per student: first epoch {np.mean(first_epochs):.2f} s (with "
        "tracing)" + (f", later epochs {np.mean(later_epochs):.2f} s" if later_epochs else "")
    )
    print(
        f"- a stack of 1 student: {single_clock.seconds[-1]:.2f} s per epoch = "
        f"{1000 * single_clock.seconds[-1] / steps:.2f} ms per step: the fixed cost of a "
        "step (fit's loop, data, kernel launches), paid once per student one at a time"
    )
    print(
        f"- the stack of {len(students)}: {stack_epoch:.2f} s per epoch "
        f"({1000 * stack_epoch / steps:.2f} ms per step), of which the arithmetic, "
        f"{flops / 1e9:.0f} GFLOP per epoch, runs at {flops / stack_epoch / 1e9:.0f} GFLOP/s"
    )
    print(
        f"- accuracy on 5,000 training images, mean over students: stacked "
        f"{np.mean(stacked_accuracy):.4f}, one at a time {np.mean(separate_accuracy):.4f}"
    )

    if args.json:
        report = {
            "seconds": {"stacked": stacked_seconds, "one_at_a_time": separate_seconds},
            "speedup": speedup,
            "speedup_after_first_epoch": steady,
            "students": len(students),
            "epochs": args.epochs,
            "examples": n,
            "batch_size": args.batch_size,
            "hidden": list(hidden),
            "seconds_per_epoch": {
                "stacked": stacked_clock.seconds,
                "single_student_stack": single_clock.seconds,
                "one_at_a_time_first": float(np.mean(first_epochs)),
            },
            "load_average": {"before": load_before, "after": load_average()},
            "cpus": os.cpu_count(),
        }
        from kdlib.io import write_json

        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
