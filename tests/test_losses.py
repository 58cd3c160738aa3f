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


def test_distillation_loss_object_validates_its_temperature_once(logits, monkeypatch):
    """The temperature is checked where it enters (the constructor), not at every step."""
    import kdlib.validate

    calls = []
    real = kdlib.validate.temperature

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(kdlib.validate, "temperature", counting)
    t, s = logits
    loss = DistillationLoss(temperature=4.0)
    for _ in range(3):
        np.testing.assert_allclose(to_np(loss(t, s)), np_distillation(t, s, 4.0).mean(), rtol=2e-4)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=0.0)


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


# -------------------------------------- accurate over the whole accepted temperature range


def np_distillation_exact(t, s, temperature) -> np.ndarray:
    """T^2 KL in float64 from the centred form KL = log(sum_j e^{r_j}), r_j = log p_j - c_j
    with c = d - E_p[d], d = (t - s) / T (r_j = s_j/T - LSE(t/T) + E_p[d] for a masked class):
    for small KL, log1p of a sum of non-negative terms, so no cancellation at large T."""
    t, s = np.asarray(t, np.float64), np.asarray(s, np.float64)
    z = t / temperature
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    p = np.exp(log_p)
    valid = p > 0
    u = np.where(valid, t - s, 0.0)
    mean_u = (p * u).sum(-1, keepdims=True)
    c = np.where(valid, (u - mean_u) / temperature, 0.0)
    lse_t = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) + z.max(
        -1, keepdims=True
    )
    r = np.where(valid, log_p - c, s / temperature - lse_t + mean_u / temperature)
    with np.errstate(over="ignore", invalid="ignore"):
        series = sum((-c) ** k / np.prod(np.arange(1.0, k + 1)) for k in range(2, 12))
        phi = np.where(np.abs(c) < 0.1, series, np.expm1(-c) + c)  # e^-c - 1 + c >= 0
        small = np.where(valid, p * phi, np.exp(r)).sum(-1)
    top = r.max(-1, keepdims=True)
    large = top[..., 0] + np.log(np.exp(r - top).sum(-1))
    kl = np.where(np.isfinite(small) & (small < 1.0), np.log1p(small), large)
    return temperature**2 * kl


@pytest.fixture
def few_logits():
    rng = np.random.default_rng(3)
    return rng.normal(0, 3, (8, 10)).astype("float32"), rng.normal(0, 3, (8, 10)).astype("float32")


@pytest.mark.parametrize("temperature", [1e-2, 0.3, 1.0, 4.0, 1e2, 1e3, 1e4, 1e5, 1e6])
def test_distillation_loss_is_accurate_over_the_accepted_range(few_logits, temperature):
    """Item 8: float32 within 1e-4 of float64 from T = 0.01 to T = 10^6 (was 42 % off at 10^4)."""
    t, s = few_logits
    expected = np_distillation_exact(t, s, temperature)
    if 0.1 <= temperature <= 1e3:  # where the plain float64 formula is exact enough
        np.testing.assert_allclose(expected, np_distillation(t, s, temperature), rtol=1e-6)
    got = to_np(distillation_loss(t, s, temperature))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="JAX computes float64 as float32")
@pytest.mark.parametrize("temperature", [0.7, 5.0, 1e3, 1e6])
def test_float64_inputs_keep_float64_precision(few_logits, temperature):
    t, s = (a.astype(np.float64) / 4 for a in few_logits)  # small logit gaps: the series branch
    got = to_np(distillation_loss(t, s, temperature))
    np.testing.assert_allclose(got, np_distillation_exact(t, s, temperature), rtol=1e-11)


@pytest.mark.parametrize("temperature", [0.5, 1e3, 1e5])
def test_gradient_is_t_times_q_minus_p_at_extreme_temperatures(few_logits, temperature):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient via tf.GradientTape")
    import tensorflow as tf

    t, s = few_logits
    s_var = tf.Variable(s)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(distillation_loss(t, s_var, temperature))
    grad = tape.gradient(loss, s_var).numpy()
    # T (q - p) = (1/T)(s - t - mean_p(s - t)) + O(1/T^2) for large T: compute exactly
    z_t, z_s = t.astype(np.float64) / temperature, s.astype(np.float64) / temperature
    p = np.exp(z_t - z_t.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(z_s - z_s.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    expected = temperature * (q - p)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(grad, expected, atol=1e-4 * scale)


def test_kl_divergence_nan_in_gives_nan_out():
    """Item 9: a NaN in p used to be dropped by the p > 0 mask and KL came out 0."""
    p = np.array([[np.nan, 0.5, 0.5], [0.0, 0.5, 0.5]], "float32")
    q = np.array([[0.2, 0.4, 0.4], [0.2, 0.4, 0.4]], "float32")
    kl = to_np(kl_divergence(p, q))
    assert np.isnan(kl[0])
    np.testing.assert_allclose(kl[1], 0.5 * np.log(0.5 / 0.4) * 2, rtol=1e-6)


def test_masked_teacher_class_gives_the_exact_finite_loss():
    """Item 10: teacher [-inf, 1, 0] at T = 2 gave NaN; the exact value is finite."""
    teacher = np.array([[-np.inf, 1.0, 0.0]], "float32")
    student = np.array([[0.5, -1.0, 2.0]], "float32")
    expected = np_distillation_exact(teacher, student, 2.0)  # drops p = 0 exactly
    # p = softmax([1, 0] / 2) on classes 1, 2; q = softmax(student / 2); T^2 sum p log(p/q)
    p = np.exp([0.5, 0.0]) / np.exp([0.5, 0.0]).sum()
    log_q = student[0] / 2 - np.log(np.exp(student[0] / 2).sum())
    np.testing.assert_allclose(expected, [4 * (p * (np.log(p) - log_q[1:])).sum()], rtol=1e-6)
    got = to_np(distillation_loss(teacher, student, 2.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_masked_teacher_class_gradient_is_finite_and_analytic():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient via tf.GradientTape")
    import tensorflow as tf

    teacher = np.array([[-np.inf, 1.0, 0.0], [2.0, -np.inf, -np.inf]], "float32")
    s = tf.Variable(np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -1.0]], "float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(distillation_loss(teacher, s, 2.0))
    grad = tape.gradient(loss, s).numpy()
    z = s.numpy().astype(np.float64) / 2.0
    q = np.exp(z - z.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    p = np.array([[0.0, *np.exp([0.5, 0.0]) / np.exp([0.5, 0.0]).sum()], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(grad, 2.0 * (q - p), atol=1e-6)
