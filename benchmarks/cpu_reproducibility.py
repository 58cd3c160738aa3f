"""Which step of `kdlib distill` depends on the CPU's instruction set? Bit-for-bit checks.

A full `kdlib distill` rerun on another CPU reproduced the teacher's, the scratch and the
smoothed students' test errors exactly, but not the distilled students'. This script finds
where the results start to differ, on a small configuration (a CNN teacher trained for one
epoch on a class-balanced subset, students for two epochs), by running the same steps in
fresh processes under different oneDNN settings, which stand in for different CPUs:

- ``default``: TensorFlow's oneDNN kernels with the best instruction set of this CPU;
- ``avx2``: oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``), as on a CPU without AVX-512;
- ``avx512_core``: oneDNN limited to AVX-512 without VNNI/BF16 (``ONEDNN_MAX_CPU_ISA``);
- ``no_onednn``: TensorFlow's Eigen kernels (``TF_ENABLE_ONEDNN_OPTS=0``).

Each process (1) trains the teacher and (2) computes its logits on the training images, then
(3) computes the logits of the *default* process's teacher weights (the same weights for
every setting), (4) trains a scratch student and (5) a distilled student from the default
process's logits (the same soft targets for every setting). Every array is compared bit for
bit with the default process's.

    python benchmarks/cpu_reproducibility.py --json results/cpu_reproducibility.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "no_onednn": {"TF_ENABLE_ONEDNN_OPTS": "0"},
}
STEPS = ("teacher_weights", "teacher_logits", "reference_teacher_logits", "scratch", "distilled")


def _child(folder: Path, reference: Path | None, train_size: int) -> None:
    """Run the five steps in this process and save their arrays in ``folder``."""
    import numpy as np

    from kdlib import experiment

    cfg = experiment.ExperimentConfig(
        train_size=train_size,
        val_size=1000,
        test_size=1000,
        teacher_epochs=1,
        epochs=2,
        seeds=1,
        verbose=0,
    )
    splits = experiment.prepare_data(cfg)
    teacher, _ = experiment.train_teacher(cfg, splits)
    np.savez(folder / "teacher_weights.npz", *teacher.get_weights())
    train_targets, val_targets = experiment.teacher_soft_targets(teacher, splits)
    np.save(folder / "teacher_logits.npy", np.asarray(train_targets["teacher_logits"]))
    if reference is not None:
        with np.load(reference / "teacher_weights.npz") as saved:
            teacher.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        train_targets, val_targets = experiment.teacher_soft_targets(teacher, splits)
    np.save(folder / "reference_teacher_logits.npy", np.asarray(train_targets["teacher_logits"]))
    if reference is not None:
        train_targets["teacher_logits"] = np.load(reference / "reference_teacher_logits.npy")
        val_targets["teacher_logits"] = np.load(reference / "reference_val_logits.npy")
    np.save(folder / "reference_val_logits.npy", np.asarray(val_targets["teacher_logits"]))
    twins = experiment.train_students(
        cfg, splits, teacher, cfg.seed, train_targets, val_targets, smoothed=False
    )
    np.savez(folder / "scratch.npz", *twins.scratch.get_weights())
    np.savez(folder / "distilled.npz", *twins.distilled.get_weights())


def _arrays(path: Path) -> list[Any]:
    import numpy as np

    if path.suffix == ".npy":
        return [np.load(path)]
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _compare(a: list[Any], b: list[Any]) -> dict[str, Any]:
    """Bit-for-bit comparison of two lists of float arrays."""
    import numpy as np

    differing = sum(int(np.sum(x != y)) for x, y in zip(a, b))
    total = sum(x.size for x in a)
    largest = max(float(np.max(np.abs(x.astype("float64") - y))) for x, y in zip(a, b))
    return {
        "identical": differing == 0,
        "values_differing": differing,
        "values": total,
        "max_abs_difference": largest,
    }


def _cpu_description() -> dict[str, Any]:
    """The CPU's model name and whether it has AVX-512 (Linux only; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    return {
        "model_name": fields.get("model name", ""),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the comparison here")
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child), Path(args.reference) if args.reference else None, args.train_size)
        return 0
    start = time.perf_counter()
    report: dict[str, Any] = {
        "settings": SETTINGS,
        "train_size": args.train_size,
        "cpu": _cpu_description(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folders = {name: Path(tmp) / name for name in SETTINGS}
        for name, extra in SETTINGS.items():
            folders[name].mkdir()
            env = {**os.environ, **extra}
            command = [
                sys.executable,
                __file__,
                "--child",
                str(folders[name]),
                "--train-size",
                str(args.train_size),
            ]
            if name != "default":
                command += ["--reference", str(folders["default"])]
            subprocess.run(command, env=env, check=True, timeout=1800)
            print(f"{name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        suffix = {"teacher_weights": ".npz", "scratch": ".npz", "distilled": ".npz"}
        for name in SETTINGS:
            if name == "default":
                continue
            report[name] = {
                step: _compare(
                    _arrays(folders["default"] / f"{step}{suffix.get(step, '.npy')}"),
                    _arrays(folders[name] / f"{step}{suffix.get(step, '.npy')}"),
                )
                for step in STEPS
            }
    report["seconds"] = time.perf_counter() - start
    for name in SETTINGS:
        if name in report:
            for step in STEPS:
                r = report[name][step]
                print(
                    f"{name:<12} {step:<25} identical {r['identical']!s:<5} "
                    f"{r['values_differing']:>7} of {r['values']:>8} values differ, "
                    f"max |difference| {r['max_abs_difference']:.3g}"
                )
    if args.json:
        from kdlib import io

        io.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
