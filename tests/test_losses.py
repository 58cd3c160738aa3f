"""kdlib.losses against plain numpy formulas and the analytic gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from reference import np_distillation, np_kl, np_softmax

from kdlib.losses import (
    DistillationLoss,
    distillation_loss,
    kl_divergence,
    softmax_with_temperature,
)

TEMPERATURES = [0.5, 1.0, 2.0, 5.0, 20.0]
# float64 inputs stay float64 on TensorFlow and PyTorch; JAX computes them in float32 unless
# jax_enable_x64 is set (a process-wide switch kdlib must not flip).
FLOAT64_RTOL = 1e-5 if keras.backend.backend() == "jax" else 1e-12


def to_np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


@pytest.fixture
def logits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, (16, 10)).astype("float32"), rng.normal(0, 3, (16, 10)).astype(
        "float32"
    )


# ---------------------------------------------------------------- softmax with temperature
@pytest.mark.parametrize("temp", TEMPERATURES)
def test_softmax_matches_numpy(logits, temp):
    t, _ = logits
    np.testing.assert_allclose(
        to_np(softmax_with_temperature(t, temp)), np_softmax(t, temp), rtol=1e-5, atol=1e-7
    )


def test_softmax_extreme_logits_are_exact():
    p = to_np(softmax_with_temperature(np.array([1000.0, 0.0, -1000.0], "float32")))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [1.0, 0.0, 0.0], atol=0)
    # exp(-1000 / 100) relative sizes survive at high temperature
    p = to_np(softmax_with_temperature(np.array([1000.0, 0.0, -1000.0], "float32"), 100.0))
    np.testing.assert_allclose(p, np_softmax([1000.0, 0.0, -1000.0], 100.0), rtol=1e-5)


def test_softmax_of_article_example():
    # The source article claimed softmax([0.2, 0.3, 0.5]) = [0.2, 0.3, 0.5]; it is not.
    p = to_np(softmax_with_temperature(np.array([0.2, 0.3, 0.5])))
    np.testing.assert_allclose(p, [0.289, 0.320, 0.391], atol=5e-4)


def test_softmax_temperature_limits():
    z = np.array([3.0, 1.0, 0.2], "float32")
    np.testing.assert_allclose(to_np(softmax_with_temperature(z, 0.01)), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(to_np(softmax_with_temperature(z, 1e6)), [1 / 3] * 3, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "3", None, True, [2.0]])
def test_bad_temperature_raises(bad):
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(np.zeros((1, 3)), bad)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(np.zeros((1, 3)), np.zeros((1, 3)), bad)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=bad)


# ---------------------------------------------------------------- KL divergence
def test_kl_worked_examples():
    # KL([0.6, 0.4] || [0.5, 0.5]) = 0.6 ln 1.2 + 0.4 ln 0.8
    value = to_np(kl_divergence(np.array([0.6, 0.4]), np.array([0.5, 0.5])))
    np.testing.assert_allclose(
        value, 0.6 * np.log(1.2) + 0.4 * np.log(0.8), rtol=max(FLOAT64_RTOL, 1e-6)
    )
    np.testing.assert_allclose(value, 0.0201, atol=5e-5)
    value = to_np(kl_divergence(np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.4, 0.5])))
    np.testing.assert_allclose(value, 0.0523, atol=5e-5)


def test_kl_matches_numpy_and_is_nonnegative(logits):
    t, s = logits
    p, q = np_softmax(t), np_softmax(s)
    got = to_np(kl_divergence(p.astype("float32"), q.astype("float32")))
    np.testing.assert_allclose(got, np_kl(p, q), rtol=1e-4, atol=1e-6)
    assert got.shape == (16,)
    assert np.all(got >= -1e-7)
    np.testing.assert_allclose(to_np(kl_divergence(p, p)), 0.0, atol=1e-7)


def test_kl_zero_probabilities_contribute_zero():
    p = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    q = np.array([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]])
    got = to_np(kl_divergence(p, q))
    np.testing.assert_allclose(got, np_kl(p, q), rtol=FLOAT64_RTOL)
    assert np.all(np.isfinite(got))
    # p > 0 where q = 0: infinite divergence
    assert np.isinf(to_np(kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0]))))


def test_kl_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(np.ones((2, 3)) / 3, np.ones((2, 4)) / 4)


# ---------------------------------------------------------------- distillation loss
@pytest.mark.parametrize("temp", TEMPERATURES)
def test_distillation_loss_matches_numpy(logits, temp):
    t, s = logits
    got = to_np(distillation_loss(t, s, temp))
    np.testing.assert_allclose(got, np_distillation(t, s, temp), rtol=2e-4, atol=1e-6)
    assert np.all(got >= -1e-6)


def test_distillation_loss_identical_logits_is_zero(logits):
    t, _ = logits
    np.testing.assert_allclose(to_np(distillation_loss(t, t, 3.0)), 0.0, atol=1e-6)


def test_distillation_loss_extreme_logits():
    t = np.array([[1000.0, 0.0, -1000.0]], "float32")
    s = np.array([[0.0, 1000.0, -1000.0]], "float32")
    got = to_np(distillation_loss(t, s, 1.0))
    assert np.all(np.isfinite(got))
    # p = [1, 0, 0] exactly; log q_0 = -1000 (log-softmax is exact), so KL = 1000
    np.testing.assert_allclose(got, [1000.0], rtol=1e-6)
    # shift invariance: adding a constant to all logits changes nothing
    np.testing.assert_allclose(to_np(distillation_loss(t + 500, s - 500, 1.0)), got, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_distillation_loss_in_float32_for_half_inputs(logits, dtype):
    t, s = logits
    t_h = ops.cast(t, dtype)
    s_h = ops.cast(s, dtype)
    out = distillation_loss(t_h, s_h, 4.0)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    # Reference on the half-rounded inputs, in float64.
    ref = np_distillation(to_np(ops.cast(t_h, "float32")), to_np(ops.cast(s_h, "float32")), 4.0)
    np.testing.assert_allclose(to_np(out), ref, rtol=1e-4, atol=1e-5)


def _grad_wrt_student(t: np.ndarray, s: np.ndarray, temp: float) -> np.ndarray:
    """d sum(distillation_loss) / d student_logits, with the backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        s_var = tf.Variable(s)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(distillation_loss(t, s_var, temp))
        return tape.gradient(loss, s_var).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: distillation_loss(t, v, temp).sum())(s))
    if backend == "torch":
        import torch

        s_t = torch.tensor(s, requires_grad=True)
        distillation_loss(torch.tensor(t), s_t, temp).sum().backward()
        return s_t.grad.numpy()
    pytest.skip(f"no autodiff helper for backend {backend}")


@pytest.mark.parametrize("temp", [1.0, 2.0, 5.0, 10.0])
def test_gradient_is_t_times_q_minus_p(logits, temp):
    t, s = logits
    got = _grad_wrt_student(t, s, temp)
    analytic = temp * (np_softmax(s, temp) - np_softmax(t, temp))
    np.testing.assert_allclose(got, analytic, rtol=1e-4, atol=1e-6)


def test_distillation_loss_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(np.zeros((4, 10)), np.zeros((4, 5)), 2.0)


def test_distillation_loss_object_reduces_and_serializes(logits):
    t, s = logits
    loss = DistillationLoss(temperature=4.0)
    np.testing.assert_allclose(to_np(loss(t, s)), np_distillation(t, s, 4.0).mean(), rtol=2e-4)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, DistillationLoss)
    assert restored.temperature == 4.0
    np.testing.assert_allclose(to_np(restored(t, s)), to_np(loss(t, s)), rtol=1e-6)


@pytest.mark.parametrize("temp", TEMPERATURES)
def test_distillation_loss_keeps_float64_precision(temp):
    """float64 logits give the float64 formula to float64 precision, on every backend that
    computes in float64 (Keras' ``ops.minimum`` returns float32 on PyTorch for float64
    inputs, which cost the loss 8 digits there)."""
    rng = np.random.default_rng(3)
    t, s = rng.normal(0, 3, (2, 8, 10))
    got = distillation_loss(t, s, temp)
    if keras.backend.backend() != "jax":
        assert keras.backend.standardize_dtype(got.dtype) == "float64"
    np.testing.assert_allclose(to_np(got), np_distillation(t, s, temp), rtol=FLOAT64_RTOL)
