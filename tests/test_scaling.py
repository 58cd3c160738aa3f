"""Scale-out checks: MirroredStrategy, jit_compile and mixed precision, in both modes.

References: a single-device run for MirroredStrategy, a ``jit_compile=False`` run for XLA,
a float32 run (and numpy in float64) for mixed precision. "Both modes" means the teacher
online (``y = labels``) and cached soft targets (``y = {"labels", "teacher_logits"}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from reference import np_total_loss

from kdlib import Distiller, models
from kdlib.soft_targets import cache_soft_targets

INPUT_SHAPE, NUM_CLASSES, N, BATCH = (6, 6), 10, 128, 32
ALPHA, TEMPERATURE = 0.3, 4.0
MODES = ["online", "cached"]
# bfloat16 keeps 8 significant bits (relative rounding 2**-9 = 0.2 %) in every activation
# and weight, so the logits move by ~1e-3; averaged over a batch, the total loss moved by
# 1.4e-5 (TensorFlow, JAX) to 1.4e-4 (PyTorch) relative to float32 when this was written.
# float16 (11 bits) is closer still. 2e-3 leaves room for other models and CPUs; the
# precision of the loss itself is checked exactly by the float64 test below.
HALF_LOSS_RTOL = 2e-3

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend"
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((N, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, N).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def initial_weights():
    """Weights every run starts from, so that runs differ only in how they compute."""
    keras.utils.set_random_seed(7)
    teacher = models.mlp(hidden=(32,), dropout=0.5, input_shape=INPUT_SHAPE)
    student = models.mlp(hidden=(16,), input_shape=INPUT_SHAPE)
    return teacher.get_weights(), student.get_weights()


def build(initial_weights, **compile_kwargs) -> Distiller:
    """A compiled Distiller with the shared initial weights, in the current scope/policy."""
    teacher = models.mlp(hidden=(32,), dropout=0.5, input_shape=INPUT_SHAPE, name="teacher")
    student = models.mlp(hidden=(16,), input_shape=INPUT_SHAPE, name="student")
    teacher.set_weights(initial_weights[0])
    student.set_weights(initial_weights[1])
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.1),
        alpha=ALPHA,
        temperature=TEMPERATURE,
        **compile_kwargs,
    )
    return distiller


def targets_for(mode, teacher, x, y):
    return y if mode == "online" else cache_soft_targets(teacher, x, y, verbose=0)


def train_one_epoch(distiller, mode, x, y):
    history = distiller.fit(
        x,
        targets_for(mode, distiller.teacher, x, y),
        epochs=1,
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
    )
    return {k: v[0] for k, v in history.history.items()}, distiller.student.get_weights()


def assert_same_run(run, reference, rtol=1e-5, atol=1e-5):
    (history, weights), (ref_history, ref_weights) = run, reference
    assert set(history) == set(ref_history)
    for key in ref_history:
        np.testing.assert_allclose(history[key], ref_history[key], rtol=rtol, err_msg=key)
    for got, want in zip(weights, ref_weights):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- MirroredStrategy
def two_cpu_strategy():
    import tensorflow as tf

    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.fail(
            f"MirroredStrategy needs two logical CPU devices, found {len(cpus)}: "
            "tests/conftest.py must configure them before TensorFlow initialises."
        )
    return tf.distribute.MirroredStrategy([cpus[0].name, cpus[1].name])


@tensorflow_only
@pytest.mark.parametrize("mode", MODES)
def test_mirrored_strategy_matches_one_device(mode, data, initial_weights):
    x, y = data
    single = train_one_epoch(build(initial_weights), mode, x, y)
    strategy = two_cpu_strategy()
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        distiller = build(initial_weights)
    mirrored = train_one_epoch(distiller, mode, x, y)
    # Each replica sees half of every batch; the gradients are summed across replicas.
    # Same loss and same weights mean the per-replica losses were scaled correctly.
    assert_same_run(mirrored, single)
    # evaluate reduces across replicas too
    targets = targets_for(mode, distiller.teacher, x, y)
    ev_single = build(initial_weights).evaluate(
        x, targets, batch_size=BATCH, verbose=0, return_dict=True
    )
    ev_mirrored = distiller.evaluate(x, targets, batch_size=BATCH, verbose=0, return_dict=True)
    # the mirrored model has trained one epoch, the single-device one has not
    assert set(ev_mirrored) == set(ev_single)
    assert all(np.isfinite(v) for v in ev_mirrored.values())


# ---------------------------------------------------------------- XLA
@pytest.mark.skipif(
    keras.backend.backend() == "torch" and not os.environ.get("KDLIB_TORCH_COMPILE"),
    reason="jit_compile=True on PyTorch is torch.compile, ~1 min on CPU: set "
    "KDLIB_TORCH_COMPILE=1 to run it (passed with torch 2.13)",
)
@pytest.mark.parametrize("mode", MODES)
def test_jit_compile_trains_like_the_uncompiled_model(mode, data, initial_weights):
    x, y = data
    plain = train_one_epoch(build(initial_weights, jit_compile=False), mode, x, y)
    distiller = build(initial_weights, jit_compile=True)
    jitted = train_one_epoch(distiller, mode, x, y)
    assert distiller.jit_compile
    assert_same_run(jitted, plain, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("mode", MODES)
def test_mixed_precision_loss_is_float32_and_close_to_float32(mode, policy, data, initial_weights):
    """mixed_float16 is meant for GPUs, but its numerics (and Keras' automatic loss scaling)
    are the same on a CPU, so it is checked here too."""
    x, y = data
    reference = build(initial_weights)
    logits_f32 = reference.predict(x, verbose=0)
    loss_f32 = reference.evaluate(
        x,
        targets_for(mode, reference.teacher, x, y),
        batch_size=N,
        verbose=0,
        return_dict=True,
    )["loss"]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        distiller = build(initial_weights)
        half = policy.removeprefix("mixed_")
        assert distiller.student.layers[1].compute_dtype == half  # really mixed
        if policy == "mixed_float16":  # Keras scales the loss so float16 gradients survive
            assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
        targets = targets_for(mode, distiller.teacher, x, y)
        logits_half = distiller.predict(x, verbose=0)
        loss_half = distiller.evaluate(x, targets, batch_size=N, verbose=0, return_dict=True)[
            "loss"
        ]
        y_batch = keras.tree.map_structure(lambda a: a[:BATCH], targets)
        total = distiller.compute_loss(x[:BATCH], y_batch, training=False)
        history, weights = train_one_epoch(distiller, mode, x, y)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name
    assert keras.backend.standardize_dtype(total.dtype) == "float32"
    # half precision really computed the hidden layers: the logits moved, a little
    assert 1e-5 < np.max(np.abs(logits_half - logits_f32)) < 0.05
    assert np.isfinite(loss_half)
    np.testing.assert_allclose(loss_half, loss_f32, rtol=HALF_LOSS_RTOL)
    assert all(np.isfinite(v) for v in history.values())
    assert all(w.dtype == np.float32 and np.all(np.isfinite(w)) for w in weights)


def test_loss_of_bfloat16_logits_is_computed_in_float32(data, initial_weights):
    """Given bfloat16 logits, the loss equals the float64 formula on those same values.

    Softmax and KL evaluated in bfloat16 would be off by ~1e-2 relative; in float32 they
    agree with float64 to ~1e-6.
    """
    x, y = data
    rng = np.random.default_rng(1)
    teacher_logits = keras.ops.cast(4 * rng.normal(size=(N, NUM_CLASSES)), "bfloat16")
    student_logits = keras.ops.cast(4 * rng.normal(size=(N, NUM_CLASSES)), "bfloat16")
    distiller = build(initial_weights)
    total = distiller.compute_loss(
        x,
        {"labels": y, "teacher_logits": teacher_logits},
        y_pred=student_logits,
        training=False,
    )
    assert keras.backend.standardize_dtype(total.dtype) == "float32"

    def as_f64(t):
        return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(t, "float32")), np.float64)

    expected = np_total_loss(y, as_f64(teacher_logits), as_f64(student_logits), ALPHA, TEMPERATURE)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(total)), expected, rtol=1e-5)


# ---------------------------------------------------------------- Keras distribution API (JAX)
_JAX_DATA_PARALLEL = r"""
import json, sys
import keras, numpy as np
from kdlib import Distiller, models
from kdlib.soft_targets import cache_soft_targets

assert len(keras.distribution.list_devices("cpu")) == 2, keras.distribution.list_devices()
rng = np.random.default_rng(0)
x = rng.random((128, 6, 6), dtype=np.float32)
y = rng.integers(0, 10, 128).astype("int32")
keras.utils.set_random_seed(7)
init = [m.get_weights() for m in (models.mlp(hidden=(32,), input_shape=(6, 6)),
                                  models.mlp(hidden=(16,), input_shape=(6, 6)))]

def run(mode):
    teacher = models.mlp(hidden=(32,), input_shape=(6, 6), name="teacher")
    student = models.mlp(hidden=(16,), input_shape=(6, 6), name="student")
    teacher.set_weights(init[0]); student.set_weights(init[1])
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.3, temperature=4.0)
    targets = y if mode == "online" else cache_soft_targets(teacher, x, y, verbose=0)
    history = distiller.fit(x, targets, epochs=1, batch_size=32, shuffle=False, verbose=0)
    devices = len(student.trainable_variables[0].value.sharding.device_set)
    return ({k: v[0] for k, v in history.history.items()},
            [w.tolist() for w in student.get_weights()], devices)

out = {}
for mode in ("online", "cached"):
    keras.distribution.set_distribution(None)
    single = run(mode)
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices("cpu")))
    out[mode] = {"single": single, "parallel": run(mode)}
keras.distribution.set_distribution(None)
json.dump(out, sys.stdout)
"""


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the Keras distribution API runs on JAX"
)
def test_jax_data_parallel_matches_one_device(tmp_path):
    """keras.distribution.DataParallel over two CPU devices, in a fresh process (JAX reads
    the device count from XLA_FLAGS once, at start-up)."""
    env = dict(
        os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _JAX_DATA_PARALLEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for mode in MODES:
        h_single, w_single, devices_single = results[mode]["single"]
        h_parallel, w_parallel, devices_parallel = results[mode]["parallel"]
        assert (devices_single, devices_parallel) == (1, 2)  # replicated on both devices
        assert_same_run(
            (h_parallel, [np.array(w) for w in w_parallel]),
            (h_single, [np.array(w) for w in w_single]),
        )
