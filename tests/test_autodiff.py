"""kdlib.autodiff.gradients against gradients derived by hand (numpy, float64)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from reference import np_softmax

from kdlib import autodiff, losses

# float64 needs JAX's 64-bit mode, which a test must not switch on for the whole process.
DTYPES = ["float32"] + ([] if keras.backend.backend() == "jax" else ["float64"])
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_of_a_polynomial_and_of_the_distillation_loss(dtype):
    rng = np.random.default_rng(0)
    t, s = rng.normal(0, 3, size=(2, 5))
    T = 2.5
    x = s.astype(dtype)

    def fn(v):
        soft = losses.distillation_loss(t[None].astype(dtype), v[None], T)[0]  # T^2 KL
        return {"cubes": keras.ops.sum(v**3), "soft": soft, "half": 0.5 * soft}

    grads = autodiff.gradients(fn, x)
    assert set(grads) == {"cubes", "soft", "half"}
    assert all(g.shape == x.shape and g.dtype == np.dtype(dtype) for g in grads.values())
    s64 = x.astype(np.float64)
    expected_soft = T * (np_softmax(s64, T) - np_softmax(t.astype(dtype).astype(np.float64), T))
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(grads["cubes"], 3 * s64**2, rtol=tol)
    np.testing.assert_allclose(grads["soft"], expected_soft, rtol=100 * tol, atol=tol)
    np.testing.assert_allclose(grads["half"], 0.5 * expected_soft, rtol=100 * tol, atol=tol)


def test_gradients_refuse_what_has_no_gradient():
    with pytest.raises(TypeError, match="floating-point x, got dtype int64"):
        autodiff.gradients(lambda v: {"s": keras.ops.sum(v)}, np.array([1, 2]))
    with pytest.raises(TypeError, match="dict of scalars"):
        autodiff.gradients(lambda v: keras.ops.sum(v), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"'v' has shape \(2,\)"):
        autodiff.gradients(lambda v: {"v": v * 2}, np.array([1.0, 2.0]))
