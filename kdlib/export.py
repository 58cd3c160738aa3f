"""Ship a student: convert a Keras model to a LiteRT (TensorFlow Lite) file.

:func:`to_litert` converts with Keras's own exporter (``model.export(..., format="litert")``,
which drives ``tf.lite.TFLiteConverter``) in one of three forms:

- ``quantize=None``: float32 weights and activations, the Keras model's numbers;
- ``quantize="dynamic"``: int8 weights, float activations (dynamic-range quantisation);
- ``quantize="int8"``: full-integer post-training quantisation (Jacob et al., 2018): int8
  weights *and* activations, int8 input and output, with the activation ranges calibrated
  on ``representative_data``.

An int8 tensor stores :math:`q` and means :math:`x = s (q - z)`, with the scale :math:`s`
and the zero point :math:`z` kept in the file. Running a file is :mod:`kdlib.litert_model`'s
job: :class:`LiteRTModel` (float in, float out, whatever the file's I/O type) and
:func:`evaluate_litert` (a file's score on labelled data), importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kdlib import validate
from kdlib.distiller import Distiller, check_logits_model
from kdlib.io import atomic_path
from kdlib.litert_model import (
    SUFFIX,
    LiteRTModel,
    check_images,
    check_interpreter,
    evaluate_litert,
    quiet_native_output,
)

__all__ = [
    "QUANTIZE_CHOICES",
    "check_litert_available",
    "to_litert",
    "LiteRTModel",
    "evaluate_litert",
]

QUANTIZE_CHOICES = (None, "dynamic", "int8")
#: int8 calibration data may reach this fraction of ``input_range``'s width beyond it, and
#: must span at least :data:`MIN_CALIBRATION_SPAN` of it.
CALIBRATION_SLACK = 0.05
MIN_CALIBRATION_SPAN = 0.25
#: Keras's LiteRT exporter passes converter settings through from this version on.
MIN_KERAS = (3, 13)


# ------------------------------------------------------------------------------ checks
def _input_shape(model: Any) -> tuple[int, ...]:
    """The per-example input shape of a built logits model with one input and one output."""
    if isinstance(model, Distiller):
        raise TypeError(
            "to_litert got a Distiller; export the model you ship, its student: "
            "to_litert(distiller.student, path)."
        )
    check_logits_model(model, "model")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"model {model.name!r} must be a built model with one input and one output "
            "(a Sequential with an Input or a functional model, e.g. kdlib.models.mlp())."
        )
    shape = tuple(inputs[0].shape)[1:]
    if any(d is None for d in shape) or len(tuple(outputs[0].shape)) != 2:
        raise ValueError(
            f"model {model.name!r} must take fixed-size examples and return (batch, classes) "
            f"logits; it takes {tuple(inputs[0].shape)} and returns {tuple(outputs[0].shape)}."
        )
    return shape


def _check_converter() -> None:
    """Raise unless Keras can export LiteRT here (Keras >= 3.13 on the TensorFlow backend)."""
    version = tuple(int(p) for p in keras.version().split(".")[:2] if p.isdigit())
    if version < MIN_KERAS:
        raise RuntimeError(
            f"to_litert needs Keras >= {'.'.join(map(str, MIN_KERAS))} (its LiteRT exporter), "
            f"this is Keras {keras.version()}; run `pip install -U keras`."
        )
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"to_litert converts through TensorFlow, but Keras runs on "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras."
        )


def _input_range(value: Any) -> tuple[float, float] | None:
    """``(low, high)`` with low < high, or None."""
    if value is None:
        return None
    bounds = validate.vector(value, "input_range", min_size=2, example="(0.0, 1.0)")
    if bounds.size != 2 or not bounds[0] < bounds[1]:
        raise ValueError(
            f"input_range must be (low, high) with low < high, got {value!r}; e.g. "
            "input_range=(0.0, 1.0) for images scaled by kdlib.data.scale_images."
        )
    return float(bounds[0]), float(bounds[1])


def _check_calibration(x: np.ndarray, input_range: tuple[float, float] | None) -> None:
    """Refuse int8 calibration data that would set a useless input scale: constant data
    (scale about 0), or data outside or covering little of the range the model was trained
    on (0-255 images for a model trained on [0, 1]: a scale 255 times too large)."""
    low, high = float(x.min()), float(x.max())
    fix = (
        "pass a few hundred training images scaled as in training, e.g. "
        "representative_data=kdlib.data.scale_images(x_train[:500])"
    )
    if high - low <= 1e-6 * max(1.0, abs(high)):
        raise ValueError(
            f"representative_data is constant (every value is {low:g}): the int8 input scale "
            f"calibrated on it is about 0, so every real image saturates; {fix}."
        )
    if input_range is None:
        return
    lo, hi = input_range
    width = hi - lo
    outside = low < lo - CALIBRATION_SLACK * width or high > hi + CALIBRATION_SLACK * width
    if outside or high - low < MIN_CALIBRATION_SPAN * width:
        what = "reaches outside" if outside else "covers little of"
        raise ValueError(
            f"representative_data ranges over [{low:g}, {high:g}], which {what} the range "
            f"the model was trained on, [{lo:g}, {hi:g}] (input_range): the int8 input "
            f"scale calibrated on it would not fit the model's inputs. For unscaled 0-255 "
            f"images, {fix}. If the model was trained on another range, pass it as "
            "input_range=(low, high) (None skips this check)."
        )


def check_litert_available() -> None:
    """Raise unless this environment can convert (Keras >= 3.13 on TensorFlow) and run
    (``ai-edge-litert``) LiteRT models; ``kdlib distill --export-litert`` asks before training.
    """
    _check_converter()
    check_interpreter()


# -------------------------------------------------------------------------- conversion
def to_litert(
    model: keras.Model,
    path: str | os.PathLike[str],
    quantize: str | None = None,
    representative_data: Any = None,
    input_range: tuple[float, float] | None = (0.0, 1.0),
) -> Path:
    """Convert ``model`` (logits out) to a LiteRT ``.tflite`` file, written atomically.

    Parameters
    ----------
    model : keras.Model
        A built model with one input and one output of logits (no softmax); for a
        :class:`kdlib.Distiller`, pass ``distiller.student``.
    path : path-like
        The ``.tflite`` file to write, in an existing folder. It appears complete or not at
        all: nothing half-written is left if the conversion fails.
    quantize : {None, "dynamic", "int8"}
        None keeps float32. ``"dynamic"`` stores the weights as int8 (about 4x smaller)
        and computes in float. ``"int8"`` is full-integer quantisation: int8 weights,
        activations, input and output, so integer-only hardware can run it.
    representative_data : array of shape (n, *input_shape), required for ``"int8"``
        Float inputs as the model sees them (e.g. a few hundred *training* images); every
        one is run through the model to calibrate each activation's range
        :math:`[\\min, \\max]`, from which the converter sets scale and zero point:
        :math:`s = (\\max - \\min) / 255`, :math:`z = -128 - \\mathrm{round}(\\min / s)`.
        Constant data is refused (it gives :math:`s \\approx 0`).
    input_range : (low, high) or None
        The range of the inputs the model was trained on: [0, 1] for images scaled by
        :func:`kdlib.data.scale_images`. ``representative_data`` must lie within it (up to
        5 % of its width) and span at least a quarter of it, or the calibrated input scale
        would be wrong (uint8 0-255 images for a [0, 1] model: accuracy about 10 %). None
        skips this check.

    Returns
    -------
    Path
        ``path``, now holding the model.

    Raises
    ------
    ValueError, TypeError, RuntimeError
        Before any conversion, for a bad path (missing folder, not ``.tflite``, a folder), an
        unknown ``quantize``, ``"int8"`` without (or another mode with)
        ``representative_data``, data of the wrong shape, constant data or data outside
        ``input_range``, a model that outputs
        probabilities, a Distiller, a non-TensorFlow Keras backend or a Keras older than 3.13.
    """
    quantize = validate.one_of(quantize, QUANTIZE_CHOICES, "quantize")
    input_range = _input_range(input_range)
    target = validate.output_path(path, suffix=SUFFIX, name="to_litert")
    shape = _input_shape(model)
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "quantize='int8' needs representative_data to calibrate the activation "
                "ranges: pass a few hundred training images scaled as in training, e.g. "
                "representative_data=kdlib.data.scale_images(x_train[:500])."
            )
        calibration = check_images(representative_data, shape, "representative_data")
        _check_calibration(calibration, input_range)
    elif representative_data is not None:
        raise ValueError(
            f"representative_data is used only with quantize='int8', got quantize={quantize!r}; "
            "drop it, or ask for quantize='int8'."
        )
    _check_converter()
    import tensorflow as tf  # the converter; only once the arguments are known to be good

    # TFLITE_BUILTINS only (Keras would also allow SELECT_TF_OPS): a model that needs
    # TensorFlow ops fails here, not later in an interpreter that cannot run them.
    options: dict[str, Any] = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for i in range(len(calibration)):
                yield [calibration[i : i + 1]]

        options.update(
            representative_dataset=representative_dataset,
            target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
            inference_input_type=tf.int8,
            inference_output_type=tf.int8,
        )
    with atomic_path(target) as tmp, quiet_native_output():
        model.export(str(tmp), format="litert", verbose=False, **options)
    return target
