"""Scale-out checks: MirroredStrategy, jit_compile and mixed precision, in both modes.

References: one run on a single device, in float32 and with ``jit_compile=False``
(:func:`reference_run`, computed once) for MirroredStrategy, for XLA and for mixed
precision (and numpy in float64 for the precision of the loss). "Both modes" means the
teacher online (``y = labels``) and cached soft targets (``y = {"labels",
"teacher_logits"}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ALPHA, NUM_CLASSES, TEMPERATURE
from reference import np_total_loss

from kdlib.soft_targets import cache_soft_targets

BATCH = 32
MODES = ["online", "cached"]
# bfloat16 keeps 8 significant bits (relative rounding 2**-9 = 0.2 %) in every activation
# and weight, so the logits move by ~1e-3; averaged over a batch, the total loss moved by
# 1.4e-5 (TensorFlow, JAX) to 1.4e-4 (PyTorch) relative to float32 when this was written.
# float16 (11 bits) is closer still. 2e-3 leaves room for other models and CPUs; the
# precision of the loss itself is checked exactly by the float64 test below.
HALF_LOSS_RTOL = 2e-3
# Once an epoch has been trained in half precision the weights differ by rounding too
# (HALF_WEIGHT_ATOL), so later losses may differ by a few bfloat16 units: on JAX the cached
# mode's loss after the online epoch moved by 2.9e-3.
HALF_TRAINED_LOSS_RTOL = 5e-3
# After each epoch (3 SGD steps of 0.1) the weights differ from float32 by rounding only.
HALF_WEIGHT_ATOL = 5e-3

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend"
)


@pytest.fixture
def build(make_teacher, make_student, make_distiller):
    """``build(**compile_kwargs)``: the toy Distiller (SGD, no metrics), from the same initial
    weights every time, built in the current strategy scope and precision policy."""
    weights = make_teacher().get_weights(), make_student().get_weights()

    def make(**compile_kwargs):
        teacher, student = make_teacher(), make_student()
        teacher.set_weights(weights[0])
        student.set_weights(weights[1])
        return make_distiller(teacher, student, metrics=None, **compile_kwargs)

    return make


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


_REFERENCE_RUN: dict[str, object] = {}


def reference_run(x, y, build):
    """The reference of every test below, computed once: the toy Distiller on one device,
    in float32, without XLA. The logits first, then for each mode in turn the loss before
    and the run of one epoch of training; last, ``evaluate`` of the trained Distiller on
    cached targets (batches of ``BATCH``), and those targets."""
    if not _REFERENCE_RUN:
        distiller = build(jit_compile=False)
        _REFERENCE_RUN["logits"] = distiller.predict(x, verbose=0)
        for mode in MODES:
            targets = targets_for(mode, distiller.teacher, x, y)
            _REFERENCE_RUN[mode] = (
                distiller.evaluate(x, targets, batch_size=len(x), verbose=0),
                train_one_epoch(distiller, mode, x, y),
            )
        targets = _REFERENCE_RUN["cached_targets"] = targets_for("cached", distiller.teacher, x, y)
        _REFERENCE_RUN["evaluate"] = distiller.evaluate(
            x, targets, batch_size=BATCH, verbose=0, return_dict=True
        )
    return _REFERENCE_RUN


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
def test_mirrored_strategy_matches_one_device(toy_data, build):
    """One epoch online, then one epoch on cached targets, on one device and on two."""
    x, y = toy_data
    single = reference_run(x, y, build)
    strategy = two_cpu_strategy()
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = build()
    # Each replica sees half of every batch; the gradients are summed across replicas.
    # Same loss and same weights mean the per-replica losses were scaled correctly.
    for mode in MODES:
        assert_same_run(train_one_epoch(mirrored, mode, x, y), single[mode][1])
    # evaluate reduces across replicas too: the same numbers as on one device
    targets, ev_single = single["cached_targets"], single["evaluate"]
    ev_mirrored = mirrored.evaluate(x, targets, batch_size=BATCH, verbose=0, return_dict=True)
    assert set(ev_mirrored) == set(ev_single) == {"loss", "student_loss", "distillation_loss"}
    for key in ev_single:
        np.testing.assert_allclose(ev_mirrored[key], ev_single[key], rtol=1e-5, err_msg=key)


# ---------------------------------------------------------------- XLA
@pytest.mark.skipif(
    keras.backend.backend() == "torch" and not os.environ.get("KDLIB_TORCH_COMPILE"),
    reason="jit_compile=True on PyTorch is torch.compile, ~1 min on CPU: set "
    "KDLIB_TORCH_COMPILE=1 to run it (passed with torch 2.13)",
)
def test_jit_compile_trains_like_the_uncompiled_model(toy_data, build):
    """One epoch online, then one epoch on cached targets, with and without XLA."""
    x, y = toy_data
    plain, jitted = reference_run(x, y, build), build(jit_compile=True)
    assert jitted.jit_compile
    for mode in MODES:
        reference = plain[mode][1]
        assert_same_run(train_one_epoch(jitted, mode, x, y), reference, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_like_float32(policy, toy_data, build):
    """The loss is computed in float32, and each epoch (online, then cached) in half
    precision lands near the float32 one. mixed_float16 is meant for GPUs, but its numerics
    (and Keras' automatic loss scaling) are the same on a CPU, so it is checked here too."""
    x, y = toy_data
    reference = reference_run(x, y, build)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        distiller = build()
        half = policy.removeprefix("mixed_")
        assert distiller.student.layers[1].compute_dtype == half  # really mixed
        if policy == "mixed_float16":  # Keras scales the loss so float16 gradients survive
            assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
        logits_half = distiller.predict(x, verbose=0)
        runs = {}
        for mode in MODES:
            targets = targets_for(mode, distiller.teacher, x, y)
            y_batch = keras.tree.map_structure(lambda a: a[:BATCH], targets)
            total = distiller.compute_loss(x[:BATCH], y_batch, training=False)
            assert keras.backend.standardize_dtype(total.dtype) == "float32"
            loss = distiller.evaluate(x, targets, batch_size=len(x), verbose=0)
            runs[mode] = loss, train_one_epoch(distiller, mode, x, y)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name
    # half precision really computed the hidden layers: the logits moved, a little
    assert 1e-5 < np.max(np.abs(logits_half - reference["logits"])) < 0.05
    for i, mode in enumerate(MODES):
        loss, (history, weights) = runs[mode]
        ref_loss, (ref_history, ref_weights) = reference[mode]
        rtol = HALF_LOSS_RTOL if i == 0 else HALF_TRAINED_LOSS_RTOL  # before / after training
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, err_msg=mode)
        np.testing.assert_allclose(
            history["loss"], ref_history["loss"], rtol=HALF_TRAINED_LOSS_RTOL, err_msg=mode
        )
        assert all(w.dtype == np.float32 for w in weights)  # the variables stay float32
        for got, want in zip(weights, ref_weights):
            np.testing.assert_allclose(got, want, atol=HALF_WEIGHT_ATOL, err_msg=mode)


def test_loss_of_bfloat16_logits_is_computed_in_float32(toy_data, build):
    """Given bfloat16 logits, the loss equals the float64 formula on those same values.

    Softmax and KL evaluated in bfloat16 would be off by ~1e-2 relative; in float32 they
    agree with float64 to ~1e-6.
    """
    x, y = toy_data
    rng = np.random.default_rng(1)
    teacher_logits = keras.ops.cast(4 * rng.normal(size=(len(x), NUM_CLASSES)), "bfloat16")
    student_logits = keras.ops.cast(4 * rng.normal(size=(len(x), NUM_CLASSES)), "bfloat16")
    distiller = build()
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
