"""kdlib.widgets, headless: build the explorers, move sliders, compare with NumPy."""

from __future__ import annotations

import base64
import math
import struct
from unittest import mock

import ipywidgets
import numpy as np
import pytest
from reference import np_entropy
from reference import np_kl as kl
from reference import np_softmax as softmax

from kdlib import widgets

PNG = b"\x89PNG\r\n\x1a\n"


def displayed(widget) -> dict:
    """The display data a notebook receives for ``widget``, on ipywidgets 7 and 8 alike.

    ipywidgets 8 returns it from ``_repr_mimebundle_``; ipywidgets 7 (Colab's 7.7.1) has no
    such method and publishes it from ``_ipython_display_`` instead.
    """
    if hasattr(widget, "_ipython_display_"):
        published = []
        with mock.patch.object(
            ipywidgets.widgets.widget, "display", lambda data, raw: published.append(data)
        ):
            widget._ipython_display_()
        assert len(published) == 1
        return published[0]
    bundle = widget._repr_mimebundle_()
    return bundle[0] if isinstance(bundle, tuple) else bundle  # (data, metadata) or data


LOGITS = [-2.1, 3.0, 1.5, 0.2, -1.0, -0.6, -3.0, 9.0, -0.4, 4.1]


def test_temperature_explorer_is_a_widget_that_renders():
    explorer = widgets.temperature_explorer(LOGITS, labels=[str(d) for d in range(10)])
    assert isinstance(explorer, ipywidgets.VBox)
    assert explorer.slider in explorer.children and explorer.image in explorer.children
    assert bytes(explorer.image.value).startswith(PNG)
    bundle = displayed(explorer)
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert bundle["text/plain"].startswith("TemperatureExplorer(")


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR chunk), as the PNG spec lays it out."""
    assert png.startswith(PNG) and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.mark.parametrize(
    "make", [lambda: widgets.TemperatureExplorer(LOGITS), lambda: widgets.KLExplorer()]
)
def test_explorer_png_has_twice_the_pixels_of_its_display_width(make):
    explorer = make()
    width, height = png_size(bytes(explorer.image.value))
    shown = explorer.image.layout.width  # CSS pixels, never stretched beyond the cell
    assert shown.endswith("px") and explorer.image.layout.max_width == "100%"
    assert width == 2 * int(shown.removesuffix("px"))
    assert height == round(width * 2.8 / 6.4)  # the figure's aspect ratio


@pytest.mark.parametrize(
    "make", [lambda: widgets.TemperatureExplorer(LOGITS), lambda: widgets.KLExplorer()]
)
def test_display_carries_a_static_picture_of_the_state_beside_the_live_view(make):
    explorer = make()
    if not hasattr(ipywidgets.Widget, "_repr_mimebundle_"):
        pytest.skip("ipywidgets 7 publishes its display itself; the static picture needs 8")
    data, metadata = explorer._repr_mimebundle_()
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert base64.b64decode(data["image/png"]) == bytes(explorer.image.value)
    assert metadata == {"image/png": {"width": 640}}
    slider = explorer.slider if hasattr(explorer, "slider") else explorer.p_sliders[0]
    slider.value = slider.max  # the picture follows the state at the time of display
    data, _ = explorer._repr_mimebundle_()
    assert base64.b64decode(data["image/png"]) == bytes(explorer.image.value)
    explorer.close()
    assert not explorer._repr_mimebundle_  # closed: nothing to display, as in ipywidgets


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5, 10.0, 20.0])
def test_temperature_slider_updates_distribution_bars_and_text(temperature):
    explorer = widgets.TemperatureExplorer(LOGITS, temperature=1.0)
    before = explorer.image.value
    explorer.slider.value = temperature
    expected = softmax(LOGITS, temperature)
    np.testing.assert_allclose(explorer.probabilities, expected, rtol=1e-12, atol=1e-15)
    heights = [bar.get_height() for bar in explorer.figure.axes[0].patches]
    np.testing.assert_allclose(heights, expected, rtol=1e-12, atol=1e-15)
    assert explorer.temperature == temperature
    text = explorer.summary.value
    assert f"T = {temperature:.1f}" in text
    assert f"entropy {np_entropy(expected):.3f} nats" in text
    assert f"top class 7: {expected[7]:.4f}" in text
    wrong = np.sort(np.delete(expected, 7))[::-1]
    assert f"{wrong[0] / wrong[1]:.2f}" in text
    if temperature != 1.0:
        assert explorer.image.value != before


def test_temperature_explorer_handles_extreme_logits():
    explorer = widgets.TemperatureExplorer([1000.0, 0.0, -1000.0], min_temperature=0.1)
    explorer.slider.value = 0.1
    np.testing.assert_array_equal(explorer.probabilities, [1.0, 0.0, 0.0])
    assert "nan" not in explorer.summary.value


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"logits": [1.0]}, "at least two finite numbers"),
        ({"logits": [1.0, np.nan]}, "at least two finite numbers"),
        ({"logits": [[1.0, 2.0]]}, "1-D"),
        ({"logits": [1.0, 2.0], "labels": ["a"]}, "one label per class"),
        ({"logits": [1.0, 2.0], "temperature": 50.0}, "outside the slider range"),
        ({"logits": [1.0, 2.0], "min_temperature": 0.0}, "temperature must be a finite"),
    ],
)
def test_temperature_explorer_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.TemperatureExplorer(**kwargs)


def test_kl_explorer_starts_at_the_article_example():
    explorer = widgets.kl_explorer()
    assert isinstance(explorer, ipywidgets.VBox)
    assert len(explorer.p_sliders) == len(explorer.q_sliders) == 3
    expected = 0.2 * math.log(2) + 0.3 * math.log(0.75)
    assert explorer.kl == pytest.approx(expected, rel=1e-12)
    assert explorer.reverse_kl == pytest.approx(kl([0.1, 0.4, 0.5], [0.2, 0.3, 0.5]), rel=1e-12)
    assert f"KL(p ‖ q) = {expected:.4f} nats = {expected / math.log(2):.4f} bits" in (
        explorer.summary.value
    )
    assert bytes(explorer.image.value).startswith(PNG)


def test_kl_sliders_normalise_weights_and_update_kl():
    explorer = widgets.KLExplorer(p=(0.2, 0.3, 0.5), q=(0.1, 0.4, 0.5))
    for slider, w in zip(explorer.p_sliders, (0.2, 0.2, 0.4), strict=True):
        slider.value = w
    for slider, w in zip(explorer.q_sliders, (0.5, 0.25, 0.25), strict=True):
        slider.value = w
    p, q = np.array([0.25, 0.25, 0.5]), np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(explorer.p, p)
    np.testing.assert_allclose(explorer.q, q)
    assert explorer.kl == pytest.approx(kl(p, q), rel=1e-12)
    assert explorer.reverse_kl == pytest.approx(kl(q, p), rel=1e-12)
    assert f"KL(q ‖ p) = {kl(q, p):.4f} nats" in explorer.summary.value
    bars = explorer.figure.axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], np.concatenate([p, q]))


def test_kl_explorer_equal_zero_and_infinite_cases():
    explorer = widgets.KLExplorer(p=(1, 1), q=(2, 2))
    assert explorer.kl == 0.0 and explorer.reverse_kl == 0.0
    explorer.q_sliders[1].value = 0.0  # q has no mass where p has some
    assert explorer.kl == math.inf
    assert "∞" in explorer.summary.value
    assert explorer.reverse_kl == pytest.approx(math.log(2))
    for slider in explorer.p_sliders:
        slider.value = 0.0
    assert explorer.p is None and math.isnan(explorer.kl)
    assert "All weights of p are 0" in explorer.summary.value


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        ((0.5, -0.5), (0.5, 0.5), "numbers >= 0"),
        ((1.0,), (1.0,), "at least two"),
        ((0.5, 0.5), (0.2, 0.3, 0.5), "same number of classes"),
    ],
)
def test_kl_explorer_rejects_bad_input(p, q, match):
    with pytest.raises(ValueError, match=match):
        widgets.KLExplorer(p, q)
