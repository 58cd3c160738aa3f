"""Cached soft targets for ``tf.data`` pipelines (importable from :mod:`kdlib.soft_targets`).

:func:`cache_soft_targets_dataset` runs the teacher once over a dataset of ``(x, y)``
batches and returns one that yields ``(x, {"labels": y, "teacher_logits": logits})``, the
dataset counterpart of :func:`kdlib.soft_targets.cache_soft_targets`. It needs the
``tensorflow`` package (``tf.data`` is part of it), imported only when the function runs, so
that :mod:`kdlib.soft_targets` imports on every Keras backend without it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kdlib.distiller import LABELS_KEY, TEACHER_LOGITS_KEY
from kdlib.model_checks import check_logits_model, check_teacher_logits

__all__ = [
    "cache_soft_targets_dataset",
]


def _require_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as err:  # pragma: no cover - exercised through monkeypatch
        raise RuntimeError(
            "cache_soft_targets_dataset() needs TensorFlow, because tf.data is part of it "
            f"(import failed: {err}). Install it with `pip install tensorflow`, or use "
            "kdlib.soft_targets.cache_soft_targets(teacher, x, y) on numpy arrays, which "
            "works on every Keras backend."
        ) from err
    return tf


def cache_soft_targets_dataset(teacher: keras.Model, dataset: Any, verbose: int = 1) -> Any:
    """Cache the teacher's logits for a ``tf.data`` dataset of ``(x, y)`` batches.

    The teacher runs once over ``dataset`` (which must yield the same batches in the same
    order every time it is iterated: build it without ``shuffle``, or with
    ``shuffle(..., reshuffle_each_iteration=False)``). The returned dataset yields
    ``(x, {"labels": y, "teacher_logits": logits})`` (and the sample weights, if the
    input yields ``(x, y, w)``), batched like the input, with the logits held in memory.
    Shuffle the *result* if needed, e.g. ``cached.shuffle(num_batches)``.

    Each batch checks that its labels are the ones seen during caching, so a dataset that
    reshuffles between iterations fails loudly instead of pairing images with the wrong
    logits.

    Needs the ``tensorflow`` package (``tf.data``); it works with any Keras backend that
    can read ``tf.data`` (TensorFlow, JAX, PyTorch) as long as TensorFlow is installed.

    Parameters
    ----------
    teacher : keras.Model
        The trained teacher, outputting logits.
    dataset : tf.data.Dataset
        Batches of ``(x, y)`` or ``(x, y, sample_weight)``, all of the same size except
        possibly the last (what ``dataset.batch(b)`` gives).
    verbose : int
        1 shows a progress bar of the teacher pass, 0 is silent.

    Returns
    -------
    tf.data.Dataset
    """
    tf = _require_tensorflow()
    check_logits_model(teacher, "teacher")
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"dataset must be a tf.data.Dataset of (x, y) batches, got "
            f"{type(dataset).__name__}; for numpy arrays use cache_soft_targets(teacher, x, y)."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "dataset must yield (x, y) or (x, y, sample_weight) tuples, got elements of "
            f"structure {spec}; map it first, e.g. dataset.map(lambda d: (d['image'], "
            "d['label']))."
        )
    if isinstance(spec[1], dict):
        raise ValueError(
            "dataset already yields dict targets (cached soft targets?); pass the dataset of "
            "(x, labels) batches instead."
        )

    cardinality = int(dataset.cardinality())
    if cardinality == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError(
            "dataset is infinite (it was .repeat()ed without a count), so caching it would "
            "fill the memory. Cache the finite dataset, then repeat the result: "
            "cache_soft_targets_dataset(teacher, dataset).repeat()."
        )
    progbar = keras.utils.Progbar(cardinality if cardinality > 0 else None, verbose=verbose)
    logits_list: list[np.ndarray] = []
    labels_list: list[np.ndarray] = []
    sizes: list[int] = []
    # numpy batches, so that the teacher runs on any backend (JAX cannot take tf tensors)
    for step, batch in enumerate(dataset.as_numpy_iterator()):
        x, y = batch[0], batch[1]
        logits = np.asarray(teacher.predict_on_batch(x), dtype=np.float32)
        labels = np.asarray(y)
        if labels.shape[:1] != logits.shape[:1]:
            raise ValueError(
                f"Batch {step} holds {labels.shape[:1]} labels but the teacher returned "
                f"{logits.shape[:1]} rows of logits; inputs and labels must be batched "
                "together."
            )
        logits_list.append(logits)
        labels_list.append(labels)
        sizes.append(len(labels))
        progbar.update(step + 1)
    if not sizes:
        raise ValueError("dataset is empty: nothing to cache.")
    batch_size = sizes[0]
    if any(s != batch_size for s in sizes[:-1]) or sizes[-1] > batch_size:
        raise ValueError(
            f"dataset batches have sizes {sorted(set(sizes))} in an irregular order; "
            "cache_soft_targets_dataset needs equal batches (the last may be smaller), as "
            "dataset.batch(batch_size) gives. Cache before filtering or re-batching."
        )
    all_logits = check_teacher_logits(np.concatenate(logits_list), sum(sizes), "dataset")
    all_labels = np.concatenate(labels_list)
    cached = tf.data.Dataset.from_tensor_slices((all_logits, all_labels)).batch(batch_size)

    def attach(batch: tuple[Any, ...], cache: tuple[Any, Any]) -> tuple[Any, ...]:
        logits, cached_labels = cache
        labels = batch[1]
        check = tf.debugging.assert_equal(
            tf.cast(labels, cached_labels.dtype),
            cached_labels,
            message=(
                "cache_soft_targets_dataset: the labels of this batch differ from those "
                "seen while caching, so the dataset changed order between iterations. "
                "Build it without shuffle (or with reshuffle_each_iteration=False) and "
                "shuffle the cached dataset instead."
            ),
        )
        with tf.control_dependencies([check]):
            targets = {LABELS_KEY: tf.identity(labels), TEACHER_LOGITS_KEY: logits}
        return (batch[0], targets, *batch[2:])

    return tf.data.Dataset.zip((dataset, cached)).map(
        attach, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
