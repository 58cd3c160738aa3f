"""Ship a student: convert a Keras model to a LiteRT (TensorFlow Lite) file.

:func:`to_litert` converts with Keras's own exporter (``model.export(..., format="litert")``,
which drives ``tf.lite.TFLiteConverter``) in one of three forms:

- ``quantize=None``: float32 weights and activations, the Keras model's numbers;
- ``quantize="dynamic"``: int8 weights, float activations (dynamic-range quantisation);
- ``quantize="int8"``: full-integer post-training quantisation (Jacob et al., 2018): int8
  weights *and* activations, int8 input and output, with the activation ranges calibrated
  on ``representative_data``.

An int8 tensor stores :math:`q` and means :math:`x = s (q - z)`, with the scale :math:`s`
and the zero point :math:`z` kept in the file. Running a file is :mod:`kdlib.export`'s
job: :class:`LiteRTModel` (float in, float out, whatever the file's I/O type) and
:func:`evaluate_litert` (a file's score on labelled data), importable from here too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kdlib import validate
from kdlib.distiller import Distiller, check_logits_model
from kdlib.io import atomic_path

__all__ = [
    "LiteRTModel",
    "evaluate_litert",
    "to_litert",
]


# --------- Run a LiteRT (TensorFlow Lite) file: :class:`LiteRTModel` and :func:`evaluate_litert`
SUFFIX = ".tflite"
_NO_INTERPRETER = (
    "running a .tflite file needs the LiteRT interpreter: pip install ai-edge-litert "
    "(wheels for Linux x86_64, macOS arm64 and Windows, Python 3.10-3.13)"
)


# ------------------------------------------------------------------------------ checks
def check_images(x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``x`` as a float32 array of finite values with examples of ``shape``."""
    try:
        array = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        array = np.zeros((0,), np.float32)
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape or len(array) == 0:
        got = getattr(x, "shape", type(x).__name__)
        raise ValueError(
            f"{name} must be an array of shape (n, {', '.join(map(str, shape))}) with n >= 1 "
            f"float images, got {got}; e.g. {name}=x_train[:500]."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values; pass finite float images.")
    return array


def check_interpreter() -> None:
    """Raise ImportError unless the LiteRT interpreter (``ai-edge-litert``) is installed,
    without importing it."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise ImportError(_NO_INTERPRETER)


# ------------------------------------------------------------------------ native output
@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Hide the converter's and the interpreter's chatter ("Assets written to", "INFO: Created
    TensorFlow Lite XNNPACK delegate"): C++ output on file descriptors 1 and 2, Python
    prints and TensorFlow's INFO log records. If the block raises, the captured C++ text is
    written back to stderr, so nothing that explains the error is lost.
    """
    logger = logging.getLogger("tensorflow")
    level = logger.level
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.ExitStack() as stack:
        saved = []
        for fd in (1, 2):
            with contextlib.suppress(OSError, ValueError):
                saved.append((fd, os.dup(fd)))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        for fd, _ in saved:
            os.dup2(sink.fileno(), fd)
        logger.setLevel(logging.WARNING)
        failed = True
        try:
            yield
            failed = False
        finally:
            logger.setLevel(level)
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                sink.seek(0)
                os.write(2, sink.read()[-20_000:])


# ----------------------------------------------------------------------------- running
class LiteRTModel:
    """A ``.tflite`` file loaded in the ``ai-edge-litert`` interpreter; float in, float out.

    ``predict`` quantises float inputs with the file's input scale and zero point when its
    input is int8, :math:`q = \\mathrm{clip}(\\mathrm{round}(x / s) + z, -128, 127)`, and
    returns float logits, :math:`s_{out} (q_{out} - z_{out})` for an int8 output.

    Parameters
    ----------
    path : path-like
        An existing ``.tflite`` file with one input and one output.
    num_threads : int, optional
        Interpreter threads; None lets LiteRT choose.
    """

    def __init__(self, path: str | os.PathLike[str], num_threads: int | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != SUFFIX or not self.path.is_file():
            raise ValueError(
                f"{str(path)!r} is not an existing {SUFFIX} file; write one with "
                "kdlib.export.to_litert(model, 'student.tflite')."
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise ImportError(_NO_INTERPRETER) from err
        try:
            with quiet_native_output():
                self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{str(path)!r} is not a valid LiteRT model: {err}") from err
        inputs, outputs = (
            self._interpreter.get_input_details(),
            self._interpreter.get_output_details(),
        )
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{str(path)!r} has {len(inputs)} inputs and {len(outputs)} "
                "outputs; LiteRTModel runs models with one of each."
            )
        self.input_details, self.output_details = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self.input_details["shape"][1:])
        self._batch = -1

    @property
    def input_dtype(self) -> np.dtype:
        """The file's input type: float32 (float I/O) or int8 (full-integer model)."""
        return np.dtype(self.input_details["dtype"])

    def _quantized_input(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype == np.float32:
            return x
        scale, zero_point = self.input_details["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _float_output(self, q: np.ndarray) -> np.ndarray:
        if np.dtype(self.output_details["dtype"]) == np.float32:
            return q.copy()
        scale, zero_point = self.output_details["quantization"]
        return (q.astype(np.float32) - zero_point) * np.float32(scale)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:
            self._interpreter.resize_tensor_input(
                self.input_details["index"], [len(batch), *self.input_shape]
            )
            with quiet_native_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                self._interpreter.allocate_tensors()
            self._batch = len(batch)
        self._interpreter.set_tensor(self.input_details["index"], self._quantized_input(batch))
        self._interpreter.invoke()
        return self._float_output(self._interpreter.get_tensor(self.output_details["index"]))

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Float logits for float inputs ``x`` of shape (n, *input_shape)."""
        images = check_images(x, self.input_shape, "x")
        batch_size = validate.positive_int(batch_size, "batch_size", example=256)
        return np.concatenate(
            [self._run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )


def evaluate_litert(
    path: str | os.PathLike[str], x: Any, y: Any, batch_size: int = 256
) -> dict[str, Any]:
    """Test accuracy of a ``.tflite`` classifier on float inputs ``x`` and integer labels ``y``.

    Returns
    -------
    dict
        ``accuracy`` (float, fraction correct), ``errors`` (int), ``num_images`` (int) and
        ``predictions`` (the argmax class per image, for agreement with another model).
    """
    model = LiteRTModel(path)
    labels = np.asarray(y)
    if (
        labels.ndim != 1
        or len(labels) != len(np.asarray(x))
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            f"y must be one integer label per image of x ({len(np.asarray(x))} images), got "
            f"shape {labels.shape} and dtype {labels.dtype}."
        )
    predictions = np.argmax(model.predict(x, batch_size=batch_size), axis=-1)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "errors": int(np.sum(predictions != labels)),
        "num_images": len(labels),
        "predictions": predictions,
    }


QUANTIZE_CHOICES = (None, "dynamic", "int8")
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

    Returns
    -------
    Path
        ``path``, now holding the model.

    Raises
    ------
    ValueError, TypeError, RuntimeError
        Before any conversion, for a bad path (missing folder, not ``.tflite``, a folder), an
        unknown ``quantize``, ``"int8"`` without (or another mode with)
        ``representative_data``, data of the wrong shape, a model that outputs
        probabilities, a Distiller, a non-TensorFlow Keras backend or a Keras older than 3.13.
    """
    quantize = validate.one_of(quantize, QUANTIZE_CHOICES, "quantize")
    target = validate.output_path(path, suffix=SUFFIX, name="to_litert")
    shape = _input_shape(model)
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "quantize='int8' needs representative_data to calibrate the activation "
                "ranges: pass a few hundred training images, e.g. representative_data="
                "x_train[:500]."
            )
        calibration = check_images(representative_data, shape, "representative_data")
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
