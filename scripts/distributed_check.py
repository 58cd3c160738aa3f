#!/usr/bin/env python
"""The Distiller on several processes and devices, compared with one device (``make
test-distributed``).

Every case trains ``kdlib.Distiller`` for a few steps, online (teacher on every batch) and
with cached soft targets, with sample weights, and compares the student's weights with a run
on one process and one device of the same backend, on the same global batches in the same
order. Equal means ``max |Δw| <= 1e-5`` (float32). The cases:

* ``jax-4-devices``: one JAX process, 4 CPU devices (``--xla_force_host_platform_device_count``),
  ``keras.distribution.DataParallel``;
* ``jax-2-processes``: two JAX processes on 127.0.0.1 with 2 CPU devices each,
  ``keras.distribution.initialize`` (``jax.distributed.initialize`` underneath) with the gloo
  CPU collectives, ``DataParallel`` over the 4 global devices; each process feeds its part
  of every global batch (``kdlib.distribution.local_rows``) and caches the teacher's logits
  of those rows only;
* ``tf-mirrored-2-cpus``: ``tf.distribute.MirroredStrategy`` over 2 logical CPUs, with a
  negative control: the same run with the loss averaged per replica (the classic custom-loss
  bug) must differ;
* ``tf-multi-worker-2-processes``: ``tf.distribute.MultiWorkerMirroredStrategy`` on two
  processes (``TF_CONFIG``). Keras 3 does not support it (keras-team/keras#20585): ``fit``
  fails with "Attempt to convert a value (PerReplica: ...) with an unsupported type". The
  case is a strict expected failure: it fails the check the day that error goes away, so that
  the case can become an equality check.

The optimizer is plain SGD: Adam divides each step by the gradient's own scale, so it would
hide a loss that is N times too large or too small on N replicas.

Each case runs in fresh processes (the backend and the device count are fixed when a process
starts), started and stopped by PID, with a time limit; the ports are chosen free. One JSON
line per case and mode goes to stdout and to ``--jsonl`` (written atomically).

    python scripts/distributed_check.py --jsonl build/distributed.jsonl
    python scripts/distributed_check.py --cases jax-2-processes   # one case (and its reference)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOLERANCE = 1e-5
NUM_EXAMPLES, GLOBAL_BATCH, EPOCHS = 128, 32, 2
STEPS = EPOCHS * NUM_EXAMPLES // GLOBAL_BATCH
INPUT_SHAPE, NUM_CLASSES = (6, 6), 10
LEARNING_RATE, ALPHA, TEMPERATURE = 0.2, 0.3, 4.0
MODES = ("online", "cached")
KERAS_ISSUE = "keras-team/keras#20585"
#: What Keras 3 raises in fit() under MultiWorkerMirroredStrategy (keras-team/keras#20585).
KERAS_ISSUE_ERROR = (
    "with an unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>)"
)
#: A clean exit of every process, or a clear failure, takes seconds; this bounds a hang.
DEFAULT_TIMEOUT = 180.0
#: Seconds the other processes of a case get to end by themselves after one has failed.
PEER_GRACE = 15.0


@dataclass(frozen=True)
class Case:
    """A set-up to compare with the single-device reference of its backend."""

    name: str
    backend: str
    processes: int
    devices_per_process: int
    expected_failure: str | None = None

    @property
    def devices(self) -> int:
        return self.processes * self.devices_per_process


CASES = (
    Case("jax-4-devices", "jax", 1, 4),
    Case("jax-2-processes", "jax", 2, 2),
    Case("tf-mirrored-2-cpus", "tensorflow", 1, 2),
    Case("tf-multi-worker-2-processes", "tensorflow", 2, 1, expected_failure=KERAS_ISSUE),
)
REFERENCES = {b: Case("reference", b, 1, 1) for b in ("jax", "tensorflow")}


# ---------------------------------------------------------------- the training (workers)
def problem() -> dict[str, Any]:
    """The toy problem, the same in every process: inputs, labels, sample weights."""
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "x": rng.random((NUM_EXAMPLES, *INPUT_SHAPE), dtype=np.float32),
        "y": rng.integers(0, NUM_CLASSES, NUM_EXAMPLES).astype("int32"),
        # uneven weights: a per-replica normalisation by the weights' sum would show
        "sample_weight": rng.uniform(0.25, 2.0, NUM_EXAMPLES).astype("float32"),
    }


def initial_weights(model: Any, seed: int) -> list[Any]:
    """Weights drawn with numpy: the same start on every backend, process and device."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()]


def build_distiller(distiller_class: Any = None) -> Any:
    """The Distiller (teacher with dropout, so the cache must be inference-mode logits)."""
    import keras

    from kdlib import Distiller, models

    teacher = models.mlp(hidden=(32,), dropout=0.5, input_shape=INPUT_SHAPE, name="teacher")
    student = models.mlp(hidden=(16,), input_shape=INPUT_SHAPE, name="student")
    teacher.set_weights(initial_weights(teacher, 1))
    student.set_weights(initial_weights(student, 2))
    distiller = (distiller_class or Distiller)(teacher=teacher, student=student)
    distiller.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE), alpha=ALPHA, temperature=TEMPERATURE
    )
    return distiller


def train(distiller: Any, mode: str, data: dict[str, Any], batch_size: int) -> list[list]:
    """``EPOCHS`` epochs in order (no shuffling); the student's weights after them."""
    from kdlib.soft_targets import cache_soft_targets

    x, y = data["x"], data["y"]
    targets = y if mode == "online" else cache_soft_targets(distiller.teacher, x, y, verbose=0)
    distiller.fit(
        x,
        targets,
        sample_weight=data["sample_weight"],
        batch_size=batch_size,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    return [w.tolist() for w in distiller.student.get_weights()]


def sharded_devices(distiller: Any) -> int:
    """Devices holding the student's first variable (JAX): 1 without a distribution."""
    variable = distiller.student.trainable_variables[0].value
    return len(variable.sharding.device_set)


def worker_reference() -> dict[str, Any]:
    data = problem()
    start = build_distiller().student.get_weights()
    runs = {mode: train(build_distiller(), mode, data, GLOBAL_BATCH) for mode in MODES}
    return {"devices": 1, "initial": [w.tolist() for w in start], "weights": runs}


def worker_jax_devices(devices: int) -> dict[str, Any]:
    import keras

    found = keras.distribution.list_devices("cpu")
    if len(found) != devices:
        raise RuntimeError(f"expected {devices} JAX CPU devices, found {found}")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found))
    data, runs = problem(), {}
    for mode in MODES:
        distiller = build_distiller()
        runs[mode] = train(distiller, mode, data, GLOBAL_BATCH)
    return {"devices": sharded_devices(distiller), "weights": runs}


def worker_jax_processes(coordinator: str, processes: int, process: int) -> dict[str, Any]:
    import jax

    # Cross-process collectives on CPU need an implementation; gloo ships with jaxlib.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    from kdlib import distribution

    keras.distribution.initialize(coordinator, num_processes=processes, process_id=process)
    devices = keras.distribution.list_devices("cpu")  # every process's devices
    # auto_shard_dataset=False: numpy input is sharded here, by local_rows (Keras shards only
    # tf.data datasets by itself).
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    )
    data = distribution.shard_rows(problem(), GLOBAL_BATCH)
    runs = {}
    for mode in MODES:
        distiller = build_distiller()
        runs[mode] = train(distiller, mode, data, GLOBAL_BATCH // processes)
    return {
        "devices": sharded_devices(distiller),
        "process": jax.process_index(),
        "rows": len(data["x"]),
        "weights": runs,
    }


def _logical_cpus(count: int) -> list[str]:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def worker_tf_mirrored(devices: int) -> dict[str, Any]:
    import tensorflow as tf

    from kdlib import Distiller

    class PerReplicaMeanDistiller(Distiller):
        """The classic bug: each replica's loss is the mean over its own rows, so the summed
        gradients are ``replicas`` times too large."""

        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            return super().compute_loss(*args, **kwargs) * replicas

    strategy = tf.distribute.MirroredStrategy(_logical_cpus(devices))
    data, runs = problem(), {}
    for mode in MODES:
        with strategy.scope():
            distiller = build_distiller()
        runs[mode] = train(distiller, mode, data, GLOBAL_BATCH)
    with strategy.scope():
        broken = build_distiller(PerReplicaMeanDistiller)
    control = train(broken, "online", data, GLOBAL_BATCH)
    return {
        "devices": strategy.num_replicas_in_sync,
        "weights": runs,
        "negative_control": {"online": control},
    }


def worker_tf_multi_worker() -> dict[str, Any]:
    """Under ``TF_CONFIG`` (set by the launcher, as a cluster manager would): each mode's
    outcome, the weights or the error."""
    import tensorflow as tf

    from kdlib.soft_targets import cache_soft_targets

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    data, runs, errors = problem(), {}, {}
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    for mode in MODES:
        with strategy.scope():
            distiller = build_distiller()
        y = data["y"]
        if mode == "cached":
            y = cache_soft_targets(distiller.teacher, data["x"], y, verbose=0)
        dataset = tf.data.Dataset.from_tensor_slices((data["x"], y, data["sample_weight"]))
        dataset = dataset.batch(GLOBAL_BATCH).with_options(options)
        try:
            distiller.fit(dataset, epochs=EPOCHS, verbose=0)
        except Exception as error:  # the expected failure: recorded, judged by the launcher
            errors[mode] = f"{type(error).__name__}: {error}"
            continue
        runs[mode] = [w.tolist() for w in distiller.student.get_weights()]
    return {"devices": strategy.num_replicas_in_sync, "weights": runs, "errors": errors}


def run_worker(args: argparse.Namespace) -> None:
    import keras

    case = args.worker
    by_name = {c.name: c for c in CASES}
    if case in by_name and keras.backend.backend() != by_name[case].backend:
        raise RuntimeError(f"case {case} needs KERAS_BACKEND={by_name[case].backend}")
    workers = {
        "reference": worker_reference,
        "jax-4-devices": lambda: worker_jax_devices(4),
        "jax-2-processes": lambda: worker_jax_processes(
            args.coordinator, args.processes, args.process
        ),
        "tf-mirrored-2-cpus": lambda: worker_tf_mirrored(2),
        "tf-multi-worker-2-processes": worker_tf_multi_worker,
    }
    result = workers[case]()
    from kdlib import io

    io.write_text(args.out, json.dumps({"backend": keras.backend.backend(), **result}))
    sys.stdout.flush()
    # Skip the interpreter's teardown: JAX's distributed client and TensorFlow's collective
    # runtime can wait on the other processes while shutting down; the result is written.
    os._exit(0)


# ---------------------------------------------------------------- launching (by PID, bounded)
def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago (bound to port 0 by the kernel, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to the process group this script
    started (``start_new_session``): the worker and anything it spawned, nothing else."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(commands: list[tuple[list[str], dict[str, str]]], logs: list[Path], timeout: float):
    """Start every command at once, wait at most ``timeout`` seconds for all of them; when one
    fails, the others get ``PEER_GRACE`` seconds to end (then they are stopped). Returns the
    exit codes (``None`` for a process that was stopped)."""
    processes = []
    try:
        for (command, env), log in zip(commands, logs):
            with open(log, "wb") as out:
                processes.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [p.poll() for p in processes]
            if all(code is not None for code in codes):
                break
            if any(code not in (None, 0) for code in codes):
                deadline = min(deadline, time.monotonic() + PEER_GRACE)
            time.sleep(0.1)
    finally:
        for p in processes:
            stop(p)
    return [
        p.returncode if p.returncode is not None and p.returncode >= 0 else None for p in processes
    ]


def worker_commands(case: Case, out: Path) -> list[tuple[list[str], dict[str, str]]]:
    script = str(Path(__file__).resolve())
    env = {
        **os.environ,
        "KERAS_BACKEND": case.backend,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # CPU only: the check compares devices of one kind; a GPU would change the numerics.
        "CUDA_VISIBLE_DEVICES": "",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={case.devices_per_process}",
    }
    env.pop("TF_CONFIG", None)
    base = [sys.executable, script, "--worker", case.name]
    if case.processes == 1:
        return [(base + ["--out", str(out / f"{case.name}-0.json")], env)]
    ports = free_ports(case.processes)
    commands = []
    for p in range(case.processes):
        result = ["--out", str(out / f"{case.name}-{p}.json")]
        if case.backend == "jax":
            cluster = [
                "--coordinator",
                f"127.0.0.1:{ports[0]}",
                "--processes",
                str(case.processes),
                "--process",
                str(p),
            ]
            commands.append((base + result + cluster, env))
        else:
            tf_config = {
                "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                "task": {"type": "worker", "index": p},
            }
            commands.append((base + result, {**env, "TF_CONFIG": json.dumps(tf_config)}))
    return commands


def run_case(case: Case, folder: Path, timeout: float) -> tuple[list[dict], float]:
    """Run ``case``'s processes; their results (one per process), and the seconds taken."""
    commands = worker_commands(case, folder)
    logs = [folder / f"{case.name}-{p}.log" for p in range(len(commands))]
    start = time.monotonic()
    codes = launch(commands, logs, timeout)
    seconds = time.monotonic() - start
    if any(code != 0 for code in codes):
        tails = "\n".join(
            f"--- process {p} (exit {code}), last lines of its log:\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            for p, (code, log) in enumerate(zip(codes, logs))
        )
        raise RuntimeError(
            f"case {case.name}: exit codes {codes} (None: stopped after the time limit of "
            f"{timeout:.0f} s or after another process failed)\n{tails}"
        )
    return [
        json.loads((folder / f"{case.name}-{p}.json").read_text()) for p in range(len(commands))
    ], seconds


# ---------------------------------------------------------------- comparing
def max_abs_difference(a: list[list], b: list[list]) -> float:
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"{len(a)} weight arrays against {len(b)}")
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))


def shorten(message: str, keep: int = 160) -> str:
    """One line: the start and the end of a long error message (the middle is a tensor)."""
    message = " ".join(message.split())
    return (
        message
        if len(message) <= keep
        else f"{message[: keep // 3]} ... {message[-keep * 2 // 3 :]}"
    )


def judge(case: Case, results: list[dict], reference: dict, seconds: float) -> list[dict]:
    """One line per mode (and per negative control): the numbers and a verdict."""
    lines = []
    moved = {m: max_abs_difference(reference["weights"][m], reference["initial"]) for m in MODES}
    for mode in MODES:
        line = {
            "case": case.name,
            "mode": mode,
            "backend": case.backend,
            "processes": case.processes,
            "devices": case.devices,
            "devices_seen": results[0]["devices"],
            "steps": STEPS,
            "global_batch": GLOBAL_BATCH,
            "sample_weights": True,
            "max_abs_dw": None,
            "moved": moved[mode],
            "tolerance": TOLERANCE,
            "seconds": round(seconds, 1),
        }
        errors = [r.get("errors", {}).get(mode) for r in results]
        if case.expected_failure:
            line["expected_failure"] = case.expected_failure
            if all(e and KERAS_ISSUE_ERROR in e for e in errors):
                line["status"] = "expected failure"
                line["error"] = shorten(errors[0])
            elif any(errors):
                line["status"] = "failed differently"
                line["error"] = shorten(next(e for e in errors if e), 600)
            else:
                line["status"] = f"passed: {case.expected_failure} looks fixed"
        if not any(errors):
            line["max_abs_dw"] = max(
                max_abs_difference(r["weights"][mode], reference["weights"][mode]) for r in results
            )
            if not case.expected_failure:
                line["status"] = "equal" if line["max_abs_dw"] <= TOLERANCE else "differ"
        lines.append(line)
    for result in results[:1]:
        for mode, weights in result.get("negative_control", {}).items():
            difference = max_abs_difference(weights, reference["weights"][mode])
            lines.append(
                {
                    "case": case.name,
                    "mode": f"{mode}, loss averaged per replica (negative control)",
                    "backend": case.backend,
                    "processes": case.processes,
                    "devices": case.devices,
                    "steps": STEPS,
                    "max_abs_dw": difference,
                    "tolerance": TOLERANCE,
                    "status": "differs, as expected" if difference > 100 * TOLERANCE else "equal",
                }
            )
    return lines


def passed(line: dict) -> bool:
    if "negative control" in line["mode"]:
        return line["status"] == "differs, as expected"
    if line.get("expected_failure"):
        return line["status"] == "expected failure"
    return line["status"] == "equal" and line["moved"] > 1000 * TOLERANCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", type=Path, help="also write the JSON lines to this file")
    parser.add_argument(
        "--cases", nargs="+", choices=[c.name for c in CASES], default=[c.name for c in CASES]
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per case, all its processes together ({DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if args.jsonl is not None:
        from kdlib import io, validate

        args.jsonl.parent.mkdir(parents=True, exist_ok=True)
        validate.output_path(args.jsonl, ".jsonl", "--jsonl")
        io.probe_folder(args.jsonl)
    cases = [c for c in CASES if c.name in args.cases]
    lines: list[dict] = []
    references: dict[str, dict] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kdlib-distributed-") as folder:
        for case in cases:
            if case.backend not in references:
                results, _ = run_case(REFERENCES[case.backend], Path(folder), args.timeout)
                references[case.backend] = results[0]
            results, seconds = run_case(case, Path(folder), args.timeout)
            for line in judge(case, results, references[case.backend], seconds):
                print(json.dumps(line), flush=True)
                lines.append(line)
    if args.jsonl is not None:
        io.write_text(args.jsonl, "".join(json.dumps(line) + "\n" for line in lines))
    failed = [line for line in lines if not passed(line)]
    print(
        f"distributed check: {len(lines) - len(failed)} of {len(lines)} lines as expected, "
        f"{time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    for line in failed:
        print(
            f"NOT AS EXPECTED: {line['case']} ({line['mode']}): {line['status']}", file=sys.stderr
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
