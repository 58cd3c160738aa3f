"""kdlib.losses beyond the logits (AT, RKD, DKD) against float64 numpy references written
here from the papers, and the properties the papers state."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from reference import np_distillation, np_log_softmax, np_softmax

from kdlib.losses import (
    attention_map,
    attention_transfer_loss,
    decoupled_kd_terms,
    distillation_loss,
    dkd_loss,
    rkd_angle_loss,
    rkd_distance_loss,
)

RTOL = 1e-5 if keras.backend.backend() == "jax" else 1e-10  # JAX computes float64 in float32
ATOL = 1e-6 if keras.backend.backend() == "jax" else 1e-12
# TCKD subtracts two nearly equal terms: float32 (JAX) keeps about 1e-5 of T^2 KL
DKD_RTOL, DKD_ATOL = (1e-4, 1e-5) if keras.backend.backend() == "jax" else (RTOL, ATOL)


def to_np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


# ------------------------------------------------------------------- references (float64)
def np_attention_map(a, p=2.0) -> np.ndarray:
    a = np.asarray(a, np.float64)
    q = (np.abs(a) ** p).sum(axis=-1).reshape(len(a), -1)  # the paper's sum over channels
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def np_at_loss(t, s, p=2.0) -> np.ndarray:
    return ((np_attention_map(s, p) - np_attention_map(t, p)) ** 2).mean(axis=1)


def np_huber(x) -> np.ndarray:
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def np_rkd_distance(t, s) -> float:
    def psi(e):
        e = np.asarray(e, np.float64).reshape(len(e), -1)
        n = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / (d.sum() / (n * (n - 1)))

    n = len(t)
    off = ~np.eye(n, dtype=bool)
    return float(np_huber(psi(s) - psi(t))[off].mean())


def np_rkd_angle(t, s) -> float:
    def psi(e):
        e = np.asarray(e, np.float64).reshape(len(e), -1)
        n = len(e)
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    if i == j or k == j:
                        continue  # a zero vector: cosine 0
                    a, b = e[i] - e[j], e[k] - e[j]
                    out[i, j, k] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        return out

    return float(np_huber(psi(s) - psi(t)).mean())


def np_dkd_terms(t, s, y, temp) -> tuple[np.ndarray, np.ndarray]:
    """Zhao et al. (2022), eq. 1-3, written with explicit probabilities."""
    pt, ps = np_softmax(t, temp), np_softmax(s, temp)
    tckd, nckd = [], []
    for i, c in enumerate(y):
        bt = np.array([pt[i, c], 1 - pt[i, c]])
        bs = np.array([ps[i, c], 1 - ps[i, c]])
        tckd.append(np.sum(bt * np.log(bt / bs)))
        rest = np.arange(pt.shape[1]) != c
        ht, hs = pt[i, rest] / pt[i, rest].sum(), ps[i, rest] / ps[i, rest].sum()
        nckd.append(np.sum(ht * np.log(ht / hs)))
    return temp**2 * np.array(tckd), temp**2 * np.array(nckd)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def random_rotation(rng, d) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------- attention transfer
def test_attention_map_matches_numpy(rng):
    a = rng.normal(size=(3, 5, 4, 6))
    np.testing.assert_allclose(to_np(attention_map(a)), np_attention_map(a), rtol=RTOL)
    np.testing.assert_allclose(
        to_np(attention_map(a, p=1)), np_attention_map(a, 1), rtol=RTOL, atol=ATOL
    )
    assert np.allclose(np.linalg.norm(to_np(attention_map(a)), axis=1), 1.0)


def test_attention_transfer_loss_matches_numpy_with_different_channels(rng):
    t, s = rng.normal(size=(4, 5, 5, 8)), rng.normal(size=(4, 5, 5, 3))
    for p in (1.0, 2.0, 4.0):
        np.testing.assert_allclose(
            to_np(attention_transfer_loss(t, s, p)), np_at_loss(t, s, p), rtol=RTOL, atol=ATOL
        )


def test_attention_transfer_loss_zero_and_scale_invariant(rng):
    t, s = rng.normal(size=(4, 5, 5, 8)), rng.normal(size=(4, 5, 5, 8))
    np.testing.assert_allclose(to_np(attention_transfer_loss(t, t)), 0.0, atol=ATOL)
    base = to_np(attention_transfer_loss(t, s))
    assert np.all(base > 0)
    for c in (0.01, 3.0, 250.0):
        np.testing.assert_allclose(to_np(attention_transfer_loss(c * t, s)), base, rtol=1e-6)
        np.testing.assert_allclose(to_np(attention_transfer_loss(t, c * s)), base, rtol=1e-6)


def test_attention_transfer_loss_rejects_different_spatial_sizes(rng):
    with pytest.raises(ValueError, match="same spatial size"):
        attention_transfer_loss(rng.normal(size=(2, 6, 6, 3)), rng.normal(size=(2, 3, 3, 3)))


# ------------------------------------------------------------------- RKD
def test_rkd_losses_match_numpy(rng):
    t, s = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))  # widths may differ
    np.testing.assert_allclose(
        float(to_np(rkd_distance_loss(t, s))), np_rkd_distance(t, s), rtol=RTOL
    )
    np.testing.assert_allclose(float(to_np(rkd_angle_loss(t, s))), np_rkd_angle(t, s), rtol=RTOL)


def test_rkd_losses_zero_for_equal_embeddings(rng):
    t = rng.normal(size=(6, 4))
    assert float(to_np(rkd_distance_loss(t, t))) == pytest.approx(0.0, abs=ATOL)
    assert float(to_np(rkd_angle_loss(t, t))) == pytest.approx(0.0, abs=ATOL)


def test_rkd_losses_invariant_to_rotation_translation_scaling(rng):
    t, s = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    moved = 3.5 * s @ random_rotation(rng, 4) + rng.normal(size=(1, 4)) * 10
    for loss in (rkd_distance_loss, rkd_angle_loss):
        base = float(to_np(loss(t, s)))
        assert base > 0
        assert float(to_np(loss(t, moved))) == pytest.approx(base, rel=1e-5)
        # an embedding equal to the teacher's up to such a map costs nothing
        assert float(to_np(loss(t, 0.2 * t @ random_rotation(rng, 4) - 1.0))) == pytest.approx(
            0.0, abs=1e-6
        )


def test_rkd_gradients_are_finite_with_duplicate_examples(rng):
    t = rng.normal(size=(5, 3)).astype("float32")
    s = keras.Variable(np.concatenate([t[:4], t[:1]]) * 2)  # one example twice: distance 0
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = rkd_distance_loss(t, s) + rkd_angle_loss(t, s)
        grad = tape.gradient(loss, s.value)
    elif keras.backend.backend() == "jax":
        import jax

        grad = jax.grad(lambda v: rkd_distance_loss(t, v) + rkd_angle_loss(t, v))(s.value)
    else:
        import torch

        v = torch.tensor(ops.convert_to_numpy(s.value), requires_grad=True)
        (rkd_distance_loss(t, v) + rkd_angle_loss(t, v)).backward()
        grad = v.grad
    assert np.all(np.isfinite(to_np(grad)))


# ------------------------------------------------------------------- DKD
@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_decoupled_kd_terms_match_numpy(rng, temp):
    t, s, y = rng.normal(0, 3, (8, 10)), rng.normal(0, 3, (8, 10)), rng.integers(0, 10, 8)
    tckd, nckd = decoupled_kd_terms(t, s, y, temp)
    ref_t, ref_n = np_dkd_terms(t, s, y, temp)
    np.testing.assert_allclose(to_np(tckd), ref_t, rtol=DKD_RTOL, atol=DKD_ATOL)
    np.testing.assert_allclose(to_np(nckd), ref_n, rtol=DKD_RTOL, atol=DKD_ATOL)
    np.testing.assert_allclose(
        to_np(dkd_loss(t, s, y, 1.0, 8.0, temp)), ref_t + 8.0 * ref_n, rtol=DKD_RTOL, atol=DKD_ATOL
    )


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kd_is_tckd_plus_one_minus_teacher_target_prob_times_nckd(rng, temp):
    """Zhao et al. (2022), eq. 4: KD = TCKD + (1 - p_t^T) NCKD, p_t^T the teacher's."""
    t, s, y = rng.normal(0, 3, (8, 10)), rng.normal(0, 3, (8, 10)), rng.integers(0, 10, 8)
    tckd, nckd = (to_np(v) for v in decoupled_kd_terms(t, s, y, temp))
    p_teacher_true = np_softmax(t, temp)[np.arange(8), y]
    kd = np_distillation(t, s, temp)
    np.testing.assert_allclose(
        tckd + (1 - p_teacher_true) * nckd, kd, rtol=DKD_RTOL, atol=DKD_ATOL
    )
    np.testing.assert_allclose(to_np(distillation_loss(t, s, temp)), kd, rtol=1e-5, atol=1e-6)
    # the student's probability in its place breaks the identity: the weight is the teacher's
    p_student_true = np_softmax(s, temp)[np.arange(8), y]
    assert not np.allclose(tckd + (1 - p_student_true) * nckd, kd, rtol=1e-3)


def test_dkd_zero_when_student_equals_teacher(rng):
    t, y = rng.normal(0, 3, (8, 10)), rng.integers(0, 10, 8)
    np.testing.assert_allclose(to_np(dkd_loss(t, t, y, 1.0, 8.0, 4.0)), 0.0, atol=ATOL)


def test_dkd_stable_for_confident_logits():
    t = np.array([[60.0, -40.0, 0.0, 5.0]], "float32")
    s = np.array([[30.0, 0.0, -20.0, 1.0]], "float32")
    tckd, nckd = (to_np(v) for v in decoupled_kd_terms(t, s, [0], 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        _, ref_n = np_dkd_terms(t.astype(np.float64), s.astype(np.float64), [0], 1.0)
    assert np.all(np.isfinite(tckd)) and np.all(np.isfinite(nckd))
    np.testing.assert_allclose(nckd, ref_n, rtol=1e-4)
    # p_t = 1 - 3e-25: the reference's explicit 1 - p_t is 0 in float64 (its TCKD is nan),
    # kdlib's log-sum-exp of the other classes is not
    lt, ls = np_log_softmax(t, 1.0)[0], np_log_softmax(s, 1.0)[0]
    rest_t, rest_s = np.logaddexp.reduce(lt[1:]), np.logaddexp.reduce(ls[1:])
    exact = np.exp(lt[0]) * (lt[0] - ls[0]) + np.exp(rest_t) * (rest_t - rest_s)
    np.testing.assert_allclose(tckd, [exact], atol=1e-6)


def test_dkd_rejects_bad_arguments(rng):
    t = rng.normal(size=(2, 4))
    with pytest.raises(ValueError, match="beta"):
        dkd_loss(t, t, [0, 1], 1.0, -1.0, 4.0)
    with pytest.raises(ValueError, match="labels"):
        decoupled_kd_terms(t, t, np.eye(4)[[0, 1]], 4.0)
