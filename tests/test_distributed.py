"""The Distiller on several processes and devices equals one device (``make test-distributed``).

``test_distributed_check`` runs ``scripts/distributed_check.py``: two JAX processes on
127.0.0.1, one JAX process with 4 devices, MirroredStrategy over 2 logical CPUs, each against
a single-device run, and MultiWorkerMirroredStrategy as a strict expected failure
(keras-team/keras#20585). It takes minutes, so ``make test`` deselects it (marker
``distributed``); the rest of this file (how rows are split between processes, how the
check judges and stops processes) is fast and runs everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT, load_script

from kdlib import distribution

check = load_script("distributed_check")  # stdlib only: cheap to import
JSONL = ROOT / "build" / "distributed.jsonl"


# ---------------------------------------------------------------- local_rows
def global_batches_as_read(n, global_batch, processes):
    """Independent of local_rows' formula: what Keras does with each process's rows (read in
    order, ``global_batch // processes`` at a time), laid side by side in process order."""
    local = [distribution.local_rows(n, global_batch, p, processes) for p in range(processes)]
    per_process = global_batch // processes
    steps = -(-n // global_batch)
    return [
        np.concatenate([rows[k * per_process : (k + 1) * per_process] for rows in local])
        for k in range(steps)
    ]


@pytest.mark.parametrize(
    "n, global_batch, processes",
    [(128, 32, 2), (100, 32, 2), (96, 32, 4), (12, 4, 1), (10, 32, 2), (0, 8, 2), (120, 24, 3)],
)
def test_local_rows_rebuild_the_global_batches_of_one_process(n, global_batch, processes):
    """Together the processes feed exactly the batches one process reads: rows 0..B-1,
    B..2B-1, ... (the last one shorter), each row once."""
    batches = global_batches_as_read(n, global_batch, processes)
    expected = [np.arange(b, min(b + global_batch, n)) for b in range(0, n, global_batch)]
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected):
        np.testing.assert_array_equal(got, want)


def test_local_rows_on_one_process_keep_every_row():
    np.testing.assert_array_equal(distribution.local_rows(10, 4), np.arange(10))
    data = {"x": np.arange(20).reshape(10, 2), "w": None}
    sharded = distribution.shard_rows(data, 4)
    np.testing.assert_array_equal(sharded["x"], data["x"])
    assert sharded["w"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        ((128, 33, 0, 2), "global_batch_size=33 does not split over 2 processes"),
        ((129, 32, 0, 2), "The last global batch has 1 rows"),
        ((128, 32, 2, 2), "process=2 must be below processes=2"),
        ((128, 0, 0, 2), "global_batch_size"),
    ],
)
def test_local_rows_refuse_batches_that_do_not_split(args, message):
    with pytest.raises(ValueError, match=message):
        distribution.local_rows(*args)


def test_shard_rows_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"different lengths \[3, 4\]"):
        distribution.shard_rows({"x": np.zeros(4), "y": np.zeros(3)}, 2)


def test_predict_local_on_one_process_is_predict(make_teacher, toy_data):
    x, _ = toy_data
    teacher = make_teacher()
    np.testing.assert_array_equal(
        distribution.predict_local(teacher, x, batch_size=40), teacher.predict(x, verbose=0)
    )


# ---------------------------------------------------------------- the check's own logic
def fake_result(weights, **extra):
    return {"devices": 2, "weights": {m: weights for m in check.MODES}, **extra}


def reference_result():
    initial = [[[0.0, 0.0]], [1.0]]
    trained = [[[0.5, -0.25]], [1.5]]
    return {"devices": 1, "initial": initial, "weights": {m: trained for m in check.MODES}}


def test_judge_equal_and_different_weights():
    reference, case = reference_result(), check.CASES[0]
    near = [[[0.5 + 4e-6, -0.25]], [1.5]]
    lines = check.judge(case, [fake_result(near)], reference, 1.0)
    assert [line["status"] for line in lines] == ["equal", "equal"]
    assert lines[0]["max_abs_dw"] == pytest.approx(4e-6)
    assert lines[0]["moved"] == pytest.approx(0.5)
    assert all(check.passed(line) for line in lines)
    far = [[[0.5 + 2e-5, -0.25]], [1.5]]
    lines = check.judge(case, [fake_result(far)], reference, 1.0)
    assert [line["status"] for line in lines] == ["differ", "differ"]
    assert not any(check.passed(line) for line in lines)


def test_every_process_is_compared():
    reference, case = reference_result(), check.CASES[1]
    same, off = reference["weights"]["online"], [[[0.5, -0.2]], [1.5]]
    lines = check.judge(case, [fake_result(same), fake_result(off)], reference, 1.0)
    assert lines[0]["max_abs_dw"] == pytest.approx(0.05)


def test_expected_failure_is_strict():
    """The day Keras fixes keras-team/keras#20585, the check fails and says so."""
    reference = reference_result()
    (case,) = [c for c in check.CASES if c.expected_failure]
    error = (
        "ValueError: Attempt to convert a value (PerReplica:{ 0: ... }) with an unsupported "
        "type (<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor."
    )
    failing = fake_result([], errors={m: error for m in check.MODES})
    lines = check.judge(case, [failing, failing], reference, 1.0)
    assert all(line["status"] == "expected failure" and check.passed(line) for line in lines)
    assert lines[0]["expected_failure"] == "keras-team/keras#20585"
    fixed = fake_result(reference["weights"]["online"])
    lines = check.judge(case, [fixed, fixed], reference, 1.0)
    assert lines[0]["status"] == "passed: keras-team/keras#20585 looks fixed"
    assert not any(check.passed(line) for line in lines)
    other = fake_result([], errors={m: "RuntimeError: collective timed out" for m in check.MODES})
    lines = check.judge(case, [other, other], reference, 1.0)
    assert lines[0]["status"] == "failed differently" and not check.passed(lines[0])


def test_launch_stops_a_process_that_outlives_its_time_limit(tmp_path):
    """Started and stopped by PID (its own process group), within the time limit plus the
    SIGTERM grace period."""
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    start = time.monotonic()
    codes = check.launch([(command, None)], [tmp_path / "sleep.log"], timeout=1.0)
    assert codes == [None]
    assert time.monotonic() - start < 10


def test_launch_gives_up_on_the_others_when_one_process_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(check, "PEER_GRACE", 0.5)
    fail = [sys.executable, "-c", "raise SystemExit(3)"]
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    start = time.monotonic()
    codes = check.launch([(fail, None), (hang, None)], [tmp_path / "a", tmp_path / "b"], 60.0)
    assert codes == [3, None]
    assert time.monotonic() - start < 15


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = check.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


# ---------------------------------------------------------------- the real thing
@pytest.mark.distributed
def test_distributed_check():
    """Every JAX and mirrored case equal to one device (max |Δw| <= 1e-5) after training
    visibly moved the weights, the negative control different, MultiWorkerMirroredStrategy
    the expected failure; the JSON lines kept in build/distributed.jsonl for CI's log."""
    try:
        import jax  # noqa: F401
    except ImportError:
        pytest.fail(
            "the distributed check needs JAX: pip install jax (make test-distributed does)"
        )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "distributed_check.py"), "--jsonl", str(JSONL)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = [json.loads(line) for line in JSONL.read_text().splitlines()]
    assert lines == [json.loads(line) for line in proc.stdout.splitlines()]
    seen = {(line["case"], line["mode"]) for line in lines}
    for case in check.CASES:
        for mode in check.MODES:
            assert (case.name, mode) in seen
    for line in lines:
        assert line["steps"] == 8
        if line.get("expected_failure") or "negative control" in line["mode"]:
            continue
        assert line["status"] == "equal" and line["max_abs_dw"] <= 1e-5, line
        assert line["moved"] > 0.01, line  # training did something to compare
        assert line["devices_seen"] == line["devices"] > 1, line
    controls = [line for line in lines if "negative control" in line["mode"]]
    assert controls and all(line["max_abs_dw"] > 1e-3 for line in controls)
    failures = [line for line in lines if line.get("expected_failure")]
    assert failures and all(line["status"] == "expected failure" for line in failures)
    assert all("PerReplica" in line["error"] for line in failures)


# ---------------------------------------------------------------- kdlib distill --distribution
def test_config_and_command_refuse_unknown_or_unavailable_distributions(capsys, no_training):
    import keras

    from kdlib import cli
    from kdlib.experiment import ExperimentConfig

    with pytest.raises(ValueError, match="distribution"):
        ExperimentConfig(distribution="horovod")
    other = "data-parallel" if keras.backend.backend() != "jax" else "mirrored"
    with pytest.raises(SystemExit) as info:
        cli.main(["distill", "--fast", "--distribution", other])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--distribution:" in err and "backend" in err and "KERAS_BACKEND=" in err


def test_check_even_batches_names_what_does_not_split():
    distribution.check_even_batches({"training": 500, "test": 200}, (50, 1000), 2)
    with pytest.raises(ValueError, match="batch size 51 does not split over 2 devices"):
        distribution.check_even_batches({"training": 500}, (51,), 2)
    with pytest.raises(ValueError, match="the test split's last batch has 3 images"):
        distribution.check_even_batches({"training": 500, "test": 203}, (50,), 2)


_DISTILL = r"""
import json, sys
from reference import write_learnable_mnist
from kdlib.experiment import config
config.FAST_SETTINGS.update(train_size=500, val_size=100, test_size=200)
write_learnable_mnist(sys.argv[1] + "/mnist.npz", n_train=1000, n_test=300)
from kdlib import cli
argv = ["distill", "--fast", "--epochs", "1", "--teacher-epochs", "1", "--seeds", "2",
        "--batch-size", "50", "--student", "mlp"]
for name in ("none", "data-parallel"):
    code = cli.main(argv + ["--distribution", name, "--json", f"{sys.argv[1]}/{name}.json"])
    assert code == 0, code
"""


@pytest.mark.distributed
def test_kdlib_distill_data_parallel(tmp_path):
    """`kdlib distill --distribution data-parallel` on two JAX CPU devices (tiny data): it
    runs, says so, and its students score as on one device (same seeds, same batches: to
    within one test image per model and seed; the weights differ only by rounding)."""
    pytest.importorskip("jax")
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "KDLIB_DATA_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("KDLIB_FAST", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DISTILL, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distribution data-parallel: 2 replica(s), global batch 50" in proc.stdout
    one, two = (
        json.loads((tmp_path / f"{n}.json").read_text()) for n in ("none", "data-parallel")
    )
    assert abs(two["teacher"]["test_accuracy"] - one["teacher"]["test_accuracy"]) <= 1 / 200
    for model in ("scratch", "smoothed", "distilled"):
        got, want = two[model]["test_accuracies"], one[model]["test_accuracies"]
        assert len(got) == len(want) >= 1
        assert np.max(np.abs(np.subtract(got, want))) <= 1 / 200 + 1e-12, model


_FROZEN_TEACHER = r"""
import keras, numpy as np
from kdlib import Distiller, models
x = np.random.default_rng(0).random((64, 6, 6), dtype=np.float32)
with keras.distribution.DataParallel(devices=keras.distribution.list_devices()).scope():
    teacher = models.mlp(hidden=(8,), input_shape=(6, 6))
    before = teacher.predict(x, batch_size=32, verbose=0)  # compiled while trainable
    Distiller(teacher=teacher, student=models.mlp(hidden=(4,), input_shape=(6, 6)))
    after = teacher.predict(x, batch_size=32, verbose=0)  # now frozen
np.testing.assert_array_equal(before, after)
"""


@pytest.mark.distributed
def test_a_teacher_predicts_after_the_distiller_froze_it_under_data_parallel(tmp_path):
    """Keras (JAX, under a distribution) compiled predict for the variables as they were;
    after the Distiller froze the teacher it failed with "pytree structure error: different
    lengths of list" (what `kdlib distill --distribution data-parallel` first hit)."""
    pytest.importorskip("jax")
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _FROZEN_TEACHER],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
