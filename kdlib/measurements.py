"""Measurements of a trained model and of the machine it runs on.

Predictions (:func:`predict_classes`), size on disk (:func:`saved_size_bytes`), inference
time (:func:`inference_ms_per_1000`, :func:`median_ms`) and the conditions every timing
needs beside it (:func:`machine_state`, :func:`device_description`,
:func:`run_conditions`). :mod:`kdlib.report` turns them into results and text.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kdlib import validate

__all__ = [
    "INFERENCE_BATCH_SIZE",
    "predict_classes",
    "saved_size_bytes",
    "inference_ms_per_1000",
    "median_ms",
    "machine_state",
    "device_description",
    "run_conditions",
]

#: Batch size of every inference pass (soft targets, predictions, timing). One size for all,
#: dividing every split evenly, so each model's predict function is traced once.
INFERENCE_BATCH_SIZE = 1000


def predict_classes(
    model: keras.Model, x: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE
) -> np.ndarray:
    """The class each image is assigned (argmax of the logits)."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)


def saved_size_bytes(model: keras.Model) -> int:
    """Bytes of the model saved as ``.keras``, architecture and weights only (what you ship).

    A copy is saved, so a compiled model's optimizer state is not counted.
    """
    # From get_config(), which holds no compile state (clone_model would recompile the copy,
    # and the optimizer's variables would then be saved too).
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{model.name}.keras"
        copy.save(path)
        return path.stat().st_size


def inference_ms_per_1000(
    model: keras.Model,
    x: np.ndarray,
    batch_size: int = INFERENCE_BATCH_SIZE,
    repeats: int = 3,
    warm_up: bool = True,
) -> float:
    """Milliseconds to predict 1,000 images: median of ``repeats`` passes over ``x``.

    ``warm_up`` runs one untimed pass first, so that tracing is not counted; skip it only
    when the model has just predicted ``x`` with this ``batch_size``.
    """
    if warm_up:
        model.predict(x, batch_size=batch_size, verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) * 1000.0 / len(x)


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of one call of ``fn()`` (any model, any runtime).

    ``warmup`` untimed calls first (tracing, compilation, memory allocation), then
    ``repeats`` timed ones; the median ignores the slow outliers that other processes on a
    shared machine cause. Print :func:`machine_state` beside the result.
    """
    repeats = validate.positive_int(repeats, "repeats", example=20)
    warmup = validate.non_negative_int(warmup, "warmup", example=3)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def machine_state() -> str:
    """CPU cores and load averages, e.g. ``"2 CPU cores, load average 0.41 / 0.52 / 0.60
    (1 / 5 / 15 min)"``: the context every timing needs (load unknown off Unix)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return f"{os.cpu_count()} CPU cores, load average unknown"
    return (
        f"{os.cpu_count()} CPU cores, load average {one:.2f} / {five:.2f} / {fifteen:.2f} "
        "(1 / 5 / 15 min)"
    )


def device_description() -> str:
    """Which device Keras computes on, e.g. ``"GPU (1 x /physical_device:GPU:0)"``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # device discovery only

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU ({len(gpus)} x {gpus[0].name}), backend {backend}"
        return f"CPU ({os.cpu_count()} cores visible), backend {backend}"
    if backend == "torch":  # Keras' distribution API (list_devices) is JAX's and TF's only
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return f"GPU ({count} x {torch.cuda.get_device_name(0)}), backend {backend}"
        return f"CPU ({os.cpu_count()} cores visible), backend {backend}"
    return f"backend {backend}, devices {keras.distribution.list_devices()}"


def run_conditions() -> dict[str, Any]:
    """Where and how a run happens: device, CPU count, load average, library versions.

    Timings (``ms_per_1000``, ``seconds``) mean little without these: on a shared machine
    they can be several times slower than on a quiet one.
    """
    conditions: dict[str, Any] = {
        "device": device_description(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        conditions["load_average_1min"] = round(os.getloadavg()[0], 2)
    return conditions
