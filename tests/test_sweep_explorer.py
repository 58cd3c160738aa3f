"""kdlib.sweep.explorer (headless: set the controls, read what is shown) and
kdlib.dark_knowledge (the missing-digit helpers) against hand-computed values."""

from __future__ import annotations

import base64
import struct

import ipywidgets
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from reference import np_softmax  # noqa: E402

from kdlib import dark_knowledge as dk  # noqa: E402
from kdlib.sweep.explorer import SweepExplorer  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def fake_sweep():
    records = [
        {
            "temperature": t,
            "alpha": a,
            "seed": s,
            "val_accuracy": 0.90 + 0.01 * t + a / 100 + s / 1000,
            "test_accuracy": 0.80 + 0.01 * t + s / 1000,
        }
        for t in (1.0, 4.0)
        for a in (0.1, 0.5)
        for s in (0, 1, 2)
    ]
    scratch = [{"seed": s, "val_accuracy": 0.9, "test_accuracy": 0.8} for s in (0, 1, 2)]
    return {
        "temperatures": [1.0, 4.0],
        "alphas": [0.1, 0.5],
        "seeds": [0, 1, 2],
        "records": records,
        "scratch": scratch,
        "selected": {"temperature": 4.0, "alpha": 0.5},
    }


LOGITS = np.array([[9.0, 1.0, 0.0, -2.0], [0.0, 5.0, 4.0, 1.0]])


def test_explorer_shows_the_chosen_cell_and_soft_targets():
    explorer = SweepExplorer(fake_sweep(), LOGITS, labels=[0, 1])
    assert bytes(explorer.image.value).startswith(PNG)
    explorer.temperature.value = 4.0
    explorer.alpha.value = 0.1
    explorer.example.value = 1
    expected = [0.90 + 0.04 + 0.001 + s / 1000 for s in (0, 1, 2)]
    assert explorer.cell["val_mean"] == pytest.approx(np.mean(expected))
    assert explorer.cell["val_std"] == pytest.approx(np.std(expected, ddof=1))
    assert explorer.cell["test_mean"] == pytest.approx(0.841)
    np.testing.assert_allclose(explorer.probabilities, np_softmax(LOGITS[1], 4.0), rtol=1e-6)
    bars = explorer.figure.axes[1].patches
    np.testing.assert_allclose([b.get_height() for b in bars], explorer.probabilities)
    assert "T = 4, alpha = 0.1: validation 94.20" in explorer.summary.value
    assert "(a 1)" in explorer.figure.axes[1].get_title()


def test_explorer_refuses_bad_logits():
    with pytest.raises(ValueError, match="2-D"):
        SweepExplorer(fake_sweep(), [1.0, 2.0])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        SweepExplorer(fake_sweep(), LOGITS, labels=[3])


def test_missing_class_helpers():
    x = np.arange(6)
    y = np.array([3, 1, 3, 2, 0, 8])
    np.testing.assert_array_equal(dk.without_class(x, y, 3)[0], [1, 3, 4, 5])
    np.testing.assert_array_equal(dk.only_classes(x, y, [3, 8])[1], [3, 3, 8])
    # class 1's logit is 1 below the winner on the first example, 3 below on the second
    logits = np.array([[2.0, 1.0, 0.0], [0.0, -3.0, 0.0], [0.0, 0.0, 5.0]])
    labels = np.array([1, 1, 2])
    assert dk.errors_with_bias(logits, labels, 1, 0.0) == (2, 2)
    assert dk.errors_with_bias(logits, labels, 1, 1.5) == (1, 1)
    assert dk.errors_with_bias(logits, labels, 1, 3.5) == (0, 0)
    assert dk.errors_with_bias(logits, labels, 1, 6.0) == (1, 0)  # now the 2 is taken for a 1
    assert dk.best_bias(logits, labels, 1, [0.0, 1.5, 3.5, 6.0]) == 3.5
    with pytest.raises(ValueError, match="empty"):
        dk.best_bias(logits, labels, 1, [])


def test_bias_of_several_classes_at_once():
    logits = np.array([[0.0, 4.0, 5.0], [0.0, 1.0, 2.0], [3.0, 1.0, 2.0]])
    labels = np.array([0, 0, 2])
    # lowering classes 1 and 2 by 5.5 makes class 0 win everywhere
    assert dk.errors_with_bias(logits, labels, [1, 2], 0.0) == (3, 1)
    assert dk.errors_with_bias(logits, labels, [1, 2], -5.5) == (1, 1)
    assert dk.best_bias(logits, labels, [1, 2], [0.0, -2.5, -5.5]) == -5.5


def test_explorer_png_is_sharp_at_its_display_width_and_has_a_static_picture():
    """Found by the browser check: the PNG was 760 px wide and shown at 964 px (stretched)."""
    explorer = SweepExplorer(fake_sweep(), np.zeros((2, 10)))
    png = bytes(explorer.image.value)
    width, _ = struct.unpack(">II", png[16:24])
    assert explorer.image.layout.width == "900px" and explorer.image.layout.max_width == "100%"
    assert width == 2 * 900
    if hasattr(ipywidgets.Widget, "_repr_mimebundle_"):  # ipywidgets 8
        data, metadata = explorer._repr_mimebundle_()
        assert base64.b64decode(data["image/png"]) == png
        assert metadata["image/png"]["width"] == 900
