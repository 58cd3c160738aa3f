"""Hinton, Vinyals & Dean (2015), section 3, MNIST: their table beside ours, in one run.

The paper (arXiv:1503.02531): a teacher with two hidden layers of 1200 ReLU units, strongly
regularised (dropout, weight constraints) and trained on inputs jittered by up to two
pixels, makes 67 test errors; an 800-800 student trained from scratch without regularisation
makes 146; the same student trained on the soft targets of the teacher at T = 20, on the
un-jittered transfer set, makes 74.

Ours: trained with Adam and a cosine learning-rate decay for far fewer epochs than the paper
(a CPU budget), on 55,000 training images (5,000 held out for validation), tested once on
the 10,000 test images. Every choice (T, alpha) is made on the validation errors. The
defaults are the paper's setting: a 1200-1200 MLP teacher (input dropout 0.2, hidden dropout
0.5, max-norm 3.5) trained on images shifted by -2..2 whole pixels, and the student distilled
at T = 20, alpha = 0.1 from cached soft targets of the un-shifted images.

The best recipe the course found (notebook 08) changes three things, each a flag:

- ``--teacher cnn --members 3``: a stronger teacher, an arithmetic-mean ``kdlib.Ensemble`` of
  three CNNs (``kdlib.experiment``'s), each trained on shifted images with its own seed;
- ``--transfer views``: the student is distilled on shifted images too, with the teacher's
  soft targets of *every* shifted view cached once (``kdlib.shifts``: 25 views), so every
  epoch shows it new transfer data at the cost of cached training (``--transfer online``
  runs the teacher on every batch instead: the same targets, slower);
- ``--temperatures ... --alphas ... --select-epochs E``: every (T, alpha) trained for E
  epochs, the one with the fewest validation errors trained for ``--epochs``.

    python benchmarks/hinton_mnist.py --json results/hinton_mnist.json    # the paper's setting
    python benchmarks/hinton_mnist.py --teacher cnn --members 3 --teacher-epochs 12 \\
        --transfer views --temperatures 2 4 8 --alphas 0.1 0.5 --select-epochs 10 \\
        --epochs 150 --scratch-epochs 30 --json results/hinton_mnist_best.json   # the best
    python benchmarks/hinton_mnist.py --fast                               # CI, < 1 min

Teachers are saved in ``--work-dir`` (default ``build/hinton_mnist``) and reused by a later
run with the same settings, so a stopped run resumes after its last trained teacher.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PAPER = {"teacher": 67, "scratch": 146, "distilled": 74}
TRANSFERS = ("plain", "online", "views")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--teacher",
        choices=("mlp", "cnn"),
        default="mlp",
        help="mlp: 1200-1200 (the paper's); cnn: kdlib.experiment's CNN",
    )
    parser.add_argument(
        "--members", type=int, default=1, help="teachers, one seed each, in a kdlib.Ensemble"
    )
    parser.add_argument("--mean", choices=("arithmetic", "geometric"), default="arithmetic")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default 20 (fast 1)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of the distilled student (default 12)"
    )
    parser.add_argument(
        "--scratch-epochs", type=int, default=None, help="epochs of the scratch student"
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=[20.0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1])
    parser.add_argument(
        "--select-epochs",
        type=int,
        default=0,
        help="train every (T, alpha) this long, then the best on validation for --epochs "
        "(0: every one for --epochs)",
    )
    parser.add_argument(
        "--transfer",
        choices=TRANSFERS,
        default="plain",
        help="plain: cached, un-shifted (the paper's); online: shifted, teacher on every "
        "batch; views: shifted, teacher cached on all 25 views",
    )
    parser.add_argument("--online-jitter", action="store_true", help="same as --transfer online")
    parser.add_argument(
        "--load-teacher", metavar="PATH", nargs="+", help="trained teacher(s) (.keras)"
    )
    parser.add_argument("--work-dir", default="build/hinton_mnist", help="saved teachers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the teachers")
    parser.add_argument(
        "--student-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="student seeds (initial weights and data order; the first is used to choose T "
        "and alpha): a scratch and a distilled student each, paired",
    )
    parser.add_argument("--fast", action="store_true", help="small run (same as KDLIB_FAST=1)")
    parser.add_argument("--json", metavar="PATH", help="write ours and the paper's as JSON")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Defaults that depend on fast mode, and every value checked before any training."""
    from kdlib import config

    fast = True if args.fast else None
    args.fast = config.pick(full=False, fast=True, enabled=fast)
    args.teacher_epochs = args.teacher_epochs or config.pick(full=20, fast=1, enabled=fast)
    args.epochs = args.epochs or config.pick(full=12, fast=1, enabled=fast)
    args.scratch_epochs = args.scratch_epochs or args.epochs
    if args.online_jitter:
        args.transfer = "online"
    for path in args.load_teacher or []:
        if not os.path.isfile(path):
            parser.error(f"--load-teacher {path!r}: no such file")
    for name in ("teacher_epochs", "epochs", "scratch_epochs", "members"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if len(set(args.student_seeds)) != len(args.student_seeds):
        parser.error(f"--student-seeds {args.student_seeds}: a seed given twice; e.g. 0 1 2")
    if args.select_epochs < 0:
        parser.error("--select-epochs must be 0 (no separate selection) or positive")
    from kdlib import validate

    try:  # kdlib's own rules for T and alpha, with its messages
        args.temperatures = [validate.temperature(t, "--temperatures") for t in args.temperatures]
        args.alphas = [validate.alpha(a) for a in args.alphas]
    except ValueError as error:
        parser.error(str(error))


def build_teacher(kind: str, seed: int) -> Any:
    """The teacher, logits out (the shifts come from the data, not from a layer)."""
    import keras
    from keras import layers

    from kdlib import experiment

    keras.utils.set_random_seed(seed)
    if kind == "cnn":
        return experiment.TEACHERS["cnn"]()
    inputs = keras.Input((28, 28), name="images")
    x = layers.Dropout(0.2)(layers.Flatten()(inputs))
    for units in (1200, 1200):
        x = layers.Dense(
            units, activation="relu", kernel_constraint=keras.constraints.MaxNorm(3.5)
        )(x)
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="teacher_1200_1200")


def cosine_adam(epochs: int, n: int, batch_size: int) -> Any:
    import keras

    steps = epochs * math.ceil(n / batch_size)
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps))


def errors(model: Any, x: Any, y: Any) -> int:
    import numpy as np

    return int(np.sum(np.argmax(model.predict(x, batch_size=1000, verbose=0), -1) != y))


def trained_teachers(args: argparse.Namespace, splits: Any, batch: int) -> list[Any]:
    """The members: loaded, reused from ``--work-dir``, or trained on shifted images."""
    import keras

    from kdlib.io import atomic_path
    from kdlib.shifts import ShiftedTransferSet

    if args.load_teacher:
        return [keras.models.load_model(p) for p in args.load_teacher]
    members = []
    n = len(splits.x_train)
    for seed in range(args.seed, args.seed + args.members):
        # the settings that make a teacher: reused only by a run that would train the same
        path = (
            Path(args.work_dir)
            / f"teacher_{args.teacher}_seed{seed}_{args.teacher_epochs}ep_{n}images.keras"
        )
        if path.is_file():
            print(f"teacher seed {seed}: reusing {path}", flush=True)
            members.append(keras.models.load_model(path))
            continue
        teacher = build_teacher(args.teacher, seed)
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        teacher.compile(
            optimizer=cosine_adam(args.teacher_epochs, n, batch), loss=ce, metrics=["accuracy"]
        )
        keras.utils.set_random_seed(seed)
        teacher.fit(
            ShiftedTransferSet(splits.x_train, splits.y_train, batch_size=batch, seed=seed),
            epochs=args.teacher_epochs,
            verbose=2,
            validation_data=(splits.x_val, splits.y_val),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            teacher.save(tmp)
        members.append(teacher)
    return members


class Recipe:
    """One run: the splits, the teacher (one model or a kdlib.Ensemble) and 800-800 students
    that all start from the same initial weights."""

    def __init__(self, args: argparse.Namespace, splits: Any, members: list[Any]) -> None:

        from kdlib.ensemble import Ensemble

        self.args, self.splits, self.members = args, splits, members
        self.n, self.batch = len(splits.x_train), 128
        self.teacher = members[0] if len(members) == 1 else Ensemble(members, mean=args.mean)
        self.val_table: Any = None
        self.train_table: Any = None
        self.use_student_seed(args.student_seeds[0])

    def use_student_seed(self, seed: int) -> None:
        """Students from now on start from this seed's initial weights and data order."""
        import keras

        from kdlib import models

        self.order_seed = self.args.seed + seed
        keras.utils.set_random_seed(self.args.seed + 1 + seed)
        self.init = models.mlp(hidden=(800, 800), name="student").get_weights()

    def fresh_student(self) -> Any:
        from kdlib import models

        student = models.mlp(hidden=(800, 800), name="student")
        student.set_weights(self.init)
        return student

    def train_scratch(self) -> Any:
        """The 800-800 student on the labels alone: no shifts, no regularisation."""
        import keras

        scratch = self.fresh_student()
        scratch.compile(
            optimizer=cosine_adam(self.args.scratch_epochs, self.n, self.batch),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        keras.utils.set_random_seed(self.order_seed)
        scratch.fit(
            self.splits.x_train,
            self.splits.y_train,
            epochs=self.args.scratch_epochs,
            batch_size=self.batch,
            verbose=2,
            validation_data=(self.splits.x_val, self.splits.y_val),
        )
        return scratch

    def member_logits(self, x: Any) -> Any:
        """Every member's logits on ``x``: (n, members, classes)."""
        import numpy as np

        return np.stack(
            [
                np.asarray(m.predict(x, batch_size=1000, verbose=0), np.float32)
                for m in self.members
            ],
            axis=1,
        )

    def cache_tables(self) -> None:
        """The members' logits on the validation images and on the transfer set (all 25
        shifted views with ``--transfer views``), once for every T."""
        from kdlib.shifts import view_logits

        self.val_table = self.member_logits(self.splits.x_val)
        if self.args.transfer == "views" and self.args.load_teacher:
            self.train_table = view_logits(self.member_logits, self.splits.x_train)
        elif self.args.transfer == "views":  # saved beside the teachers it comes from
            import numpy as np

            from kdlib.io import atomic_path

            path = Path(self.args.work_dir) / (
                f"views_{self.args.teacher}_seeds{self.args.seed}-"
                f"{self.args.seed + self.args.members - 1}_{self.args.teacher_epochs}ep_"
                f"{self.n}images.npy"
            )
            if path.is_file():
                print(f"teachers' logits on every view: reusing {path}", flush=True)
                self.train_table = np.load(path)
                return
            self.train_table = view_logits(self.member_logits, self.splits.x_train)
            with atomic_path(path) as tmp:
                np.save(tmp, self.train_table)
        elif self.args.transfer == "plain":
            self.train_table = self.member_logits(self.splits.x_train)

    def logits_at(self, table: Any, temperature: float) -> Any:
        """Logits whose softmax at T is the members' mean (exact for either mean)."""
        from kdlib.ensemble import mean_logits

        return mean_logits(table, temperature, self.args.mean).astype("float32")

    def distil(self, temperature: float, alpha: float, epochs: int) -> Any:
        """A fresh student distilled at (T, alpha) for ``epochs`` on the chosen transfer set."""
        import keras

        from kdlib import Distiller
        from kdlib.shifts import ShiftedTransferSet

        splits, student = self.splits, self.fresh_student()
        distiller = Distiller(teacher=self.teacher, student=student)
        distiller.compile(
            optimizer=cosine_adam(epochs, self.n, self.batch),
            metrics=["accuracy"],
            alpha=alpha,
            temperature=temperature,
        )
        val = (
            splits.x_val,
            {
                "labels": splits.y_val,
                "teacher_logits": self.logits_at(self.val_table, temperature),
            },
        )
        keras.utils.set_random_seed(self.order_seed)
        if self.args.transfer == "plain":
            logits = self.logits_at(self.train_table, temperature)
            distiller.fit(
                splits.x_train,
                {"labels": splits.y_train, "teacher_logits": logits},
                epochs=epochs,
                batch_size=self.batch,
                verbose=2,
                validation_data=val,
            )
            return student
        logits = (
            None if self.train_table is None else self.logits_at(self.train_table, temperature)
        )
        data = ShiftedTransferSet(
            splits.x_train, splits.y_train, logits, batch_size=self.batch, seed=self.order_seed
        )
        distiller.fit(data, epochs=epochs, verbose=2, validation_data=val)
        return student

    def select_and_train(self) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
        """Every (T, alpha) for ``--select-epochs``; the fewest validation errors wins and
        is trained for ``--epochs`` (reused when the two are equal)."""
        args, splits = self.args, self.splits
        select_epochs = args.select_epochs or args.epochs
        selection, students = [], {}
        for temperature, alpha in itertools.product(args.temperatures, args.alphas):
            clock = time.perf_counter()
            print(f"selection: T = {temperature:g}, alpha = {alpha:g}, {select_epochs} epochs")
            students[(temperature, alpha)] = student = self.distil(
                temperature, alpha, select_epochs
            )
            selection.append(
                {
                    "temperature": temperature,
                    "alpha": alpha,
                    "epochs": select_epochs,
                    "val_errors": errors(student, splits.x_val, splits.y_val),
                    "seconds": time.perf_counter() - clock,
                }
            )
        best = min(selection, key=lambda r: (r["val_errors"], r["temperature"], r["alpha"]))
        if select_epochs == args.epochs:
            return students[(best["temperature"], best["alpha"])], selection, best
        print(
            f"final: T = {best['temperature']:g}, alpha = {best['alpha']:g}, {args.epochs} epochs"
        )
        return self.distil(best["temperature"], best["alpha"], args.epochs), selection, best


def describe_teacher(args: argparse.Namespace, members: int) -> str:
    described = f"{members} x {args.teacher} ({args.mean} mean)" if members > 1 else args.teacher
    return described + (", loaded" if args.load_teacher else ", trained on 2-pixel shifts")


def print_table(report: dict[str, Any]) -> None:
    print(f"\ntest errors on {report['test_images']:,} images   ours   paper")
    labels = {
        "teacher": f"teacher ({report['teacher']})",
        "scratch": "800-800 from scratch",
        "distilled": f"800-800 distilled, T = {report['temperature']:g}, "
        f"alpha = {report['alpha']:g}",
    }
    for name, label in labels.items():
        print(f"{label:48s}{report['ours'][name]:5d}{PAPER[name]:8d}")
    if len(report["members"]) > 1:
        print(
            "members' test errors: " + ", ".join(str(m["test_errors"]) for m in report["members"])
        )
    if len(report["selection"]) > 1:
        choices = (
            f"T={r['temperature']:g}/a={r['alpha']:g}: {r['val_errors']}"
            for r in report["selection"]
        )
        print("chosen on validation errors: " + ", ".join(choices))
    loads, total = report["load_average"], report["seconds"]["total"]
    print(f"{total:.0f} s in all; load average {loads['start']} -> {loads['end']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras

    from kdlib import experiment
    from kdlib.ensemble import Ensemble
    from kdlib.io import write_json
    from kdlib.sweep.grid import load_average

    loads = {"start": load_average()}
    start = time.perf_counter()
    splits = experiment.prepare_data(experiment.ExperimentConfig.default(fast=args.fast))
    print(
        f"{len(splits.x_train):,} training, {len(splits.x_val):,} validation, "
        f"{len(splits.y_test):,} test images; teacher {args.load_teacher or args.teacher} x "
        f"{args.members}, transfer {args.transfer}, students {args.epochs} epochs; load "
        f"average {loads['start']}",
        flush=True,
    )
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    members = trained_teachers(args, splits, 128)
    seconds["teachers"] = time.perf_counter() - clock
    recipe = Recipe(args, splits, members)
    clock = time.perf_counter()
    scratch = recipe.train_scratch()
    seconds["scratch"] = time.perf_counter() - clock
    clock = time.perf_counter()
    recipe.cache_tables()
    seconds["soft_targets"] = time.perf_counter() - clock
    clock = time.perf_counter()
    final, selection, best = recipe.select_and_train()
    seconds["selection"] = sum(r["seconds"] for r in selection)
    seconds["final_student"] = time.perf_counter() - clock - seconds["selection"]
    paired = [(args.student_seeds[0], scratch, final)]
    clock = time.perf_counter()
    for seed in args.student_seeds[1:]:  # the chosen (T, alpha), more students
        print(f"student seed {seed}: scratch, then distilled at the chosen T and alpha")
        recipe.use_student_seed(seed)
        paired.append(
            (
                seed,
                recipe.train_scratch(),
                recipe.distil(best["temperature"], best["alpha"], args.epochs),
            )
        )
    seconds["more_student_seeds"] = time.perf_counter() - clock

    teacher = recipe.teacher
    if isinstance(teacher, Ensemble):  # its class is the argmax of the mean at T = 1
        teacher.temperature = 1.0
    models = {"teacher": teacher, "scratch": scratch, "distilled": final}
    # The test set, once: the teacher, the scratch student and the chosen student.
    ours = {k: errors(m, splits.x_test, splits.y_test) for k, m in models.items()}
    seconds["total"] = time.perf_counter() - start
    loads["end"] = load_average()
    report = {
        "ours": ours,
        "paper": PAPER,
        "val_errors": {k: errors(m, splits.x_val, splits.y_val) for k, m in models.items()},
        "temperature": best["temperature"],
        "alpha": best["alpha"],
        "selection": selection,
        "teacher": describe_teacher(args, len(members)),
        "student_seeds": [
            {
                "seed": seed,
                "scratch": {
                    "val_errors": errors(a, splits.x_val, splits.y_val),
                    "test_errors": errors(a, splits.x_test, splits.y_test),
                },
                "distilled": {
                    "val_errors": errors(b, splits.x_val, splits.y_val),
                    "test_errors": errors(b, splits.x_test, splits.y_test),
                },
            }
            for seed, a, b in paired
        ],
        "members": [
            {
                "val_errors": errors(m, splits.x_val, splits.y_val),
                "test_errors": errors(m, splits.x_test, splits.y_test),
            }
            for m in members
        ],
        "mean": args.mean,
        "transfer": args.transfer,
        "epochs": args.epochs,
        "scratch_epochs": args.scratch_epochs,
        "select_epochs": args.select_epochs or args.epochs,
        "teacher_epochs": None if args.load_teacher else args.teacher_epochs,
        "test_images": len(splits.y_test),
        "val_images": len(splits.y_val),
        "train_images": len(splits.y_train),
        "seconds": seconds,
        "load_average": loads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "keras_backend": keras.backend.backend(),
        },
        "command": "python benchmarks/hinton_mnist.py " + " ".join(argv or sys.argv[1:]),
        "fast": args.fast,
    }
    print_table(report)
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
