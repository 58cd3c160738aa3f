#!/usr/bin/env python
"""The Distiller on this machine's accelerator: step time over the student's alone, and the
core equivalence tests, as one JSON (at most 5 minutes).

For every Keras backend installed (TensorFlow, JAX, PyTorch), in a fresh process each:

* **step time**, in milliseconds, of the student trained alone (``student.fit``), of
  ``kdlib.Distiller`` with the teacher online and with cached soft targets, and the two
  ratios to the student alone; in float32, with XLA (``jit_compile=True``; JAX always
  compiles, PyTorch has no XLA) and under mixed precision (``mixed_bfloat16``, and
  ``mixed_float16`` on a GPU). The course's CNN teacher (``kdlib.models.cnn()``, 422k
  parameters) and Hinton et al.'s 800-800 MLP student on MNIST-shaped random data (the cost of
  a step does not depend on the values), batch 128; the rows take turns epoch by epoch, the
  first epoch is a warm-up, the median of the timed epochs is reported;
* **the core equivalence tests** (``tests/test_losses.py tests/test_distiller.py
  tests/test_soft_targets.py tests/test_scaling.py``, what ``make test-backends`` runs) on the
  accelerator, with TF32 off (``NVIDIA_TF32_OVERRIDE=0``, JAX's matmul precision "highest"):
  their tolerances are float32's, and TF32 matmuls keep 10 bits of mantissa.

    python benchmarks/gpu_check.py --json results/gpu_check_<gpu>.json
    python benchmarks/gpu_check.py --fast     # small models and a few tests: CI, no GPU

Without a GPU it runs the reduced form (``--fast`` is implied): small models, a few steps,
float32 and one mixed-precision setting, one mixed-precision test, so that CI checks that
the command works. Every step gets what is left of ``--budget`` (5 minutes; 15 for the
reduced form, which runs on shared CI machines); one that runs out is stopped (its process
group) and reported as such, with what it had measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
CORE_TESTS = [
    "tests/test_losses.py",
    "tests/test_distiller.py",
    "tests/test_soft_targets.py",
    "tests/test_scaling.py",
]
#: The reduced form's test: the loss of half-precision logits equals the float64 formula.
FAST_TESTS = ["tests/test_scaling.py", "-k", "bfloat16_logits"]
#: Seconds for the whole command: the full form is meant to fit 5 minutes on a GPU machine;
#: the reduced form runs on shared CI machines, where the bound only stops a hang.
BUDGET_SECONDS = {"full": 300.0, "reduced": 900.0}
ROWS = ("student", "online", "cached")


# ---------------------------------------------------------------- timing (one backend, worker)
def configurations(backend: str, gpu: bool, fast: bool) -> list[tuple[str, str, bool]]:
    """(name, precision policy, jit_compile) to time on ``backend``; the reduced form times
    the first (float32) and the last (mixed precision)."""
    if backend == "jax":  # JAX always compiles with XLA; jit_compile=False would be eager
        configs = [
            ("float32_xla", "float32", True),
            ("mixed_bfloat16_xla", "mixed_bfloat16", True),
        ]
    elif backend == "torch":  # jit_compile=True is torch.compile (about a minute on a CPU)
        configs = [("float32", "float32", False), ("mixed_bfloat16", "mixed_bfloat16", False)]
    else:
        configs = [
            ("float32", "float32", False),
            ("float32_xla", "float32", True),
            ("mixed_bfloat16_xla", "mixed_bfloat16", True),
        ]
    if gpu:
        jit = backend != "torch"
        configs.append(("mixed_float16" + ("_xla" if jit else ""), "mixed_float16", jit))
    return [configs[0], configs[-1]] if fast else configs


def sizes(fast: bool) -> dict[str, Any]:
    if fast:
        return {
            "examples": 256,
            "batch": 64,
            "epochs": 2,
            "filters": (4, 8),
            "dense": 16,
            "student": (32,),
        }
    return {
        "examples": 128 * 80,
        "batch": 128,
        "epochs": 3,
        "filters": (32, 64),
        "dense": 128,
        "student": (800, 800),
    }


def accelerators(backend: str) -> list[str]:
    """The GPUs this backend sees (empty on a CPU-only machine)."""
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.cuda.get_device_name(i) for i in range(count)]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def time_config(policy: str, jit: bool, size: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds per step of the three rows, under ``policy`` and ``jit``."""
    import keras
    import numpy as np

    from kdlib import Distiller, models
    from kdlib.soft_targets import cache_soft_targets

    rng = np.random.default_rng(0)
    x = rng.random((size["examples"], 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size["examples"]).astype("int32")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)

        def teacher() -> keras.Model:
            return models.cnn(filters=size["filters"], dense=size["dense"], name="teacher")

        def student() -> keras.Model:
            return models.mlp(hidden=size["student"], name="student")

        alone = student()
        alone.compile(
            "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit
        )
        rows = {"student": (alone, y)}
        for mode in ("online", "cached"):
            distiller = Distiller(teacher=teacher(), student=student())
            distiller.compile("adam", alpha=0.1, temperature=3.0, jit_compile=jit)
            rows[mode] = (distiller, y)
        start = time.perf_counter()
        targets = cache_soft_targets(rows["cached"][0].teacher, x, y, verbose=0)
        teacher_pass = time.perf_counter() - start
        rows["cached"] = (rows["cached"][0], targets)
        seconds: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(1 + size["epochs"]):  # the first round is the warm-up (compilation)
            for name, (model, target) in rows.items():
                start = time.perf_counter()
                model.fit(x, target, batch_size=size["batch"], epochs=1, verbose=0)
                seconds[name].append(time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    steps = -(-size["examples"] // size["batch"])
    ms = {name: 1000 * statistics.median(s[1:]) / steps for name, s in seconds.items()}
    return {
        "step_ms": {name: round(v, 3) for name, v in ms.items()},
        "online_over_student": round(ms["online"] / ms["student"], 3),
        "cached_over_student": round(ms["cached"] / ms["student"], 3),
        "teacher_pass_s": round(teacher_pass, 3),
        "warm_up_s": {name: round(s[0], 2) for name, s in seconds.items()},
        "jit_compile": jit,
    }


def run_worker(backend: str, fast: bool, out: Path) -> None:
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"worker for {backend} started with KERAS_BACKEND={keras.backend.backend()}"
        )
    gpus = accelerators(backend)
    size = sizes(fast or not gpus)
    result: dict[str, Any] = {
        "keras": keras.__version__,
        "backend_version": _version(backend),
        "gpus": gpus,
        "examples": size["examples"],
        "batch": size["batch"],
        "timed_epochs": size["epochs"],
        "timings": {},
    }
    from kdlib import io

    for name, policy, jit in configurations(backend, bool(gpus), fast or not gpus):
        result["timings"][name] = time_config(policy, jit, size)
        # What is done survives a stop at the time limit; atomic, so never half a file.
        io.write_text(out, json.dumps(result))
    io.write_text(out, json.dumps(result))


def _version(backend: str) -> str:
    module = __import__(backend)
    return str(getattr(module, "__version__", "?"))


# ---------------------------------------------------------------- orchestration (stdlib only)
def run_bounded(command: list[str], env: dict[str, str], timeout: float, log: Path) -> int | None:
    """Run ``command`` in its own process group; stop the group (SIGTERM, then SIGKILL) after
    ``timeout`` seconds. The exit code, or ``None`` if it was stopped."""
    if timeout <= 0:
        log.write_text("not started: the --budget was spent\n")
        return None
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=5)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        return None


def junit_counts(path: Path) -> dict[str, Any]:
    """passed / failed / skipped and the failing test names from a pytest JUnit XML file."""
    root = ElementTree.parse(path).getroot()
    cases = root.iter("testcase")
    counts: dict[str, Any] = {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            counts["failures"].append(f"{case.get('classname')}::{case.get('name')}")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def nvidia_gpus() -> list[str]:
    """GPU names from nvidia-smi (bounded), or [] without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0
        else []
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fast", action="store_true", help="the reduced form (implied without a GPU)"
    )
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, help="default: every one installed"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON here")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole command (300; reduced form 900): what runs out is stopped",
    )
    parser.add_argument("--no-tests", action="store_true", help="timings only")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.fast, args.out)
        return 0
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be positive, got {args.budget}")
    backends = args.backends or installed_backends()
    missing = [b for b in backends if importlib.util.find_spec(b) is None]
    if missing:
        parser.error(f"backend(s) {missing} not installed; installed: {installed_backends()}")
    if args.json is not None:
        from kdlib import io, validate

        validate.output_path(args.json, ".json", "--json")
        io.probe_folder(args.json)
    gpus = nvidia_gpus()
    fast = args.fast or not gpus
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": "python benchmarks/gpu_check.py" + (" --fast" if args.fast else ""),
        "form": "reduced (--fast)" if fast else "full",
        "nvidia_smi_gpus": gpus,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "backends": {},
        "not_installed": [b for b in BACKENDS if b not in installed_backends()],
    }
    tests = FAST_TESTS if fast else CORE_TESTS
    budget = args.budget or BUDGET_SECONDS["reduced" if fast else "full"]
    deadline = started + budget  # every step gets what is left of the budget, no more
    with tempfile.TemporaryDirectory(prefix="kdlib-gpu-check-") as folder:
        for backend in backends:
            report["backends"][backend] = check_backend(
                backend, fast, None if args.no_tests else tests, deadline, Path(folder)
            )
    report["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        io.write_text(args.json, text + "\n")
    ok = all(
        entry["status"] == "ok" and (args.no_tests or entry["tests"]["status"] == "ok")
        for entry in report["backends"].values()
    )
    return 0 if ok else 1


def check_backend(
    backend: str, fast: bool, tests: list[str] | None, deadline: float, folder: Path
) -> dict[str, Any]:
    """Timings, then the tests (unless ``tests`` is None), each stopped at ``deadline``."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    out, log = folder / f"{backend}.json", folder / f"{backend}.log"
    start = time.monotonic()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        backend,
        "--out",
        str(out),
    ]
    code = run_bounded(command + (["--fast"] if fast else []), env, deadline - start, log)
    entry: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    entry["timing_seconds"] = round(time.monotonic() - start, 1)
    entry["status"] = status(code)
    if code != 0:
        entry["log_tail"] = log.read_text(errors="replace").splitlines()[-15:]
    if tests is None:
        return entry
    junit = folder / f"{backend}-junit.xml"
    # TF32 off: the tests' tolerances are float32's (TF32 matmuls keep 10 mantissa bits).
    test_env = {**env, "NVIDIA_TF32_OVERRIDE": "0", "JAX_DEFAULT_MATMUL_PRECISION": "highest"}
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:nbval", "-p", "no:cacheprovider",
              f"--junitxml={junit}", *tests]  # fmt: skip
    start = time.monotonic()
    code = run_bounded(pytest, test_env, deadline - start, folder / f"{backend}-tests.log")
    counts = junit_counts(junit) if junit.exists() else {"passed": 0, "failed": 0}
    counts.update(seconds=round(time.monotonic() - start, 1), tests=" ".join(tests), tf32="off")
    counts["status"] = status(code)
    entry["tests"] = counts
    return entry


def status(code: int | None) -> str:
    """``run_bounded``'s exit code in words."""
    if code is None:
        return "stopped: out of time (--budget)"
    return "ok" if code == 0 else f"exit {code}"


if __name__ == "__main__":
    sys.exit(main())
