"""kdlib.models: shapes, parameter counts from the layer formulas, logits out."""

from __future__ import annotations

import numpy as np
import pytest

from kdlib import models
from kdlib.distiller import applies_softmax


def test_mlp_parameter_count_and_logits():
    model = models.mlp(hidden=(800, 800), dropout=0.2)
    expected = (784 * 800 + 800) + (800 * 800 + 800) + (800 * 10 + 10)
    assert model.count_params() == expected
    assert tuple(model.outputs[0].shape) == (None, 10)
    assert not applies_softmax(model)
    out = model.predict(np.zeros((2, 28, 28), "float32"), verbose=0)
    assert out.shape == (2, 10)


def test_cnn_parameter_count():
    model = models.cnn(filters=(32, 64), dense=128)
    expected = (
        (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (7 * 7 * 64 * 128 + 128) + (128 * 10 + 10)
    )
    assert model.count_params() == expected
    assert model.predict(np.zeros((3, 28, 28), "float32"), verbose=0).shape == (3, 10)
    assert not applies_softmax(model)


def test_logits_layer_is_float32_under_mixed_precision():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.mlp(hidden=(8,))
        out = model(np.zeros((1, 28, 28), "float32"))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("hidden", [(), (0,), (8, -1), (8.5,), "800"])
def test_bad_hidden(hidden):
    with pytest.raises(ValueError, match="hidden"):
        models.mlp(hidden=hidden)


def test_bad_dropout():
    with pytest.raises(ValueError, match="dropout"):
        models.mlp(dropout=1.0)
