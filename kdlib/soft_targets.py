"""Cached soft targets: run the teacher once, then train the student at the student's cost.

Without augmentation, the teacher's logits for the transfer set are the same every epoch.
:func:`cache_soft_targets` computes them once (batched inference, teacher in inference
mode) and returns the targets the :class:`kdlib.Distiller` understands::

    targets = cache_soft_targets(teacher, x_train, y_train)   # {"labels", "teacher_logits"}
    distiller.fit(x_train, targets, epochs=10)                # the teacher is never called

The Distiller then reads ``y["teacher_logits"]`` instead of calling the teacher, and gives
the same loss for the same batch as the *online* mode (``distiller.fit(x_train, y_train)``).
Keep the online mode when the inputs are augmented: the logits of an augmented image are not
the logits of the original.

For ``tf.data`` pipelines, :func:`cache_soft_targets_dataset` does the same on a dataset of
``(x, y)`` batches; it needs the ``tensorflow`` package (``tf.data`` is part of it). It lives
in :mod:`kdlib.soft_targets` and is importable from here.

Memory
------
The cache holds ``n * num_classes`` float32 values, i.e. ``4 * n * num_classes`` bytes:

* MNIST, 60,000 x 10 classes: 2.4 MB (nothing, next to the 47 MB of images);
* CIFAR-100, 50,000 x 100: 20 MB;
* ImageNet-1k, 1,281,167 x 1000: 5.1 GB, more than most GPUs hold beside the model.

When the cache does not fit in memory: write the logits to disk once (``numpy.save`` and
``numpy.load(..., mmap_mode="r")``, or a ``tf.data`` pipeline that reads them with the
images), keep only the top-k logits per example (a lossy approximation: say so when you
use it), store them in float16 (halves the size; the losses still run in float32), or use
the online mode, which costs a teacher forward pass per batch but no memory. With data
augmentation the online mode is the only exact choice.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from kdlib import distribution, validate
from kdlib.distiller import (
    LABELS_KEY,
    TEACHER_LOGITS_KEY,
    check_logits_model,
    check_teacher_logits,
    is_tf_dataset,
)
from kdlib.ensemble import mean_logits

__all__ = [
    "cache_size_bytes",
    "cache_soft_targets",
    "cache_soft_targets_dataset",
]


# ------------------------------------------------- cached soft targets for tf.data pipelines
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


BYTES_PER_LOGIT = 4  # float32


def cache_size_bytes(num_examples: int, num_classes: int) -> int:
    """Bytes the cached logits take: ``num_examples * num_classes * 4`` (float32).

    Examples
    --------
    >>> cache_size_bytes(60_000, 10)
    2400000
    """
    num_examples = validate.non_negative_int(num_examples, "num_examples", example=60_000)
    num_classes = validate.non_negative_int(num_classes, "num_classes", example=10)
    return num_examples * num_classes * BYTES_PER_LOGIT


def _num_examples(x: Any, name: str) -> int:
    """Length of the first axis of an array, or of every array in a dict/list of inputs."""
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError(f"{name} is empty: got {x!r}.")
    lengths = set()
    for leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name} must be an array with one row per example, got a scalar {leaf!r}."
            )
        lengths.add(int(shape[0]))
    if len(lengths) != 1:
        raise ValueError(f"The inputs in {name} have different lengths {sorted(lengths)}.")
    return lengths.pop()


def cache_soft_targets(
    teacher: keras.Model,
    x: Any,
    y: Any,
    batch_size: int = 1024,
    verbose: int | str = "auto",
    temperature: float | None = None,
) -> dict[str, Any]:
    """Run the teacher once over ``x`` and return the targets for a cached-mode ``fit``.

    Parameters
    ----------
    teacher : keras.Model
        The trained teacher; it must output logits (no softmax). It runs in inference mode
        (dropout off, batch-norm statistics frozen), exactly as in the online mode.
    x : array-like, or dict/list of arrays
        The transfer-set inputs, one row per example, *as the student will see them* (same
        scaling; no augmentation, or the cache would be wrong). Under a Keras distribution
        over several processes (JAX), this process's rows only: each process caches the
        logits of the rows it feeds (:func:`kdlib.distribution.predict_local`).
    y : array-like
        The labels, one per example, as for ``fit``.
    batch_size : int
        Examples per teacher call; larger is faster as long as the activations fit.
    verbose : "auto", 0, 1 or 2
        Progress bar of the teacher pass, as in ``keras.Model.predict``.
    temperature : float, optional
        Required for a teacher whose soft targets are not the softmax of one logit vector
        at every temperature: an arithmetic-mean :class:`kdlib.Ensemble`. The cache then
        holds :math:`T \\log \\bar p_T` (float64 before the cast), whose softmax at this
        ``T`` is the ensemble's exact mean; distil with the same temperature. Ignored (a
        single model's logits are the same at every T) for any other teacher.

    Returns
    -------
    dict
        ``{"labels": y, "teacher_logits": logits}`` with ``logits`` a float32 numpy array
        of shape ``(num_examples, num_classes)``, taking ``num_examples * num_classes * 4``
        bytes (see the module docstring). Pass it as ``y`` to ``Distiller.fit`` or
        ``Distiller.evaluate``, or slice it with the inputs in a ``tf.data`` pipeline.

    Raises
    ------
    TypeError
        If ``teacher`` is not a Keras model, or ``x`` is a ``tf.data.Dataset`` (use
        :func:`cache_soft_targets_dataset`).
    ValueError
        If ``x`` and ``y`` differ in length, ``batch_size`` is not a positive integer, or
        the teacher outputs probabilities or non-finite values.
    """
    check_logits_model(teacher, "teacher")
    batch_size = validate.positive_int(batch_size, "batch_size", example=1024)
    if is_tf_dataset(x):
        raise TypeError(
            "cache_soft_targets() takes in-memory arrays; for a tf.data.Dataset of (x, y) "
            "batches use kdlib.soft_targets.cache_soft_targets_dataset(teacher, dataset)."
        )
    if y is None:
        raise ValueError(
            "y is None: the Distiller needs the labels next to the cached logits. Pass the "
            "labels of x, e.g. cache_soft_targets(teacher, x_train, y_train)."
        )
    n = _num_examples(x, "x")
    if n == 0:
        raise ValueError(
            "x is empty (0 examples): there is nothing to cache. Pass the transfer set, "
            "e.g. cache_soft_targets(teacher, x_train, y_train)."
        )
    n_labels = _num_examples(y, "y")
    if n != n_labels:
        raise ValueError(
            f"x has {n} examples but y has {n_labels} labels; pass the labels that belong "
            "to x, in the same order."
        )
    if getattr(teacher, "temperature_dependent", False):  # an arithmetic kdlib.Ensemble
        if temperature is None:
            raise ValueError(
                f"{teacher.name!r} is an ensemble whose mean prediction at temperature T is "
                "not the softmax of one logit vector, so its cache depends on T: pass the "
                "Distiller's temperature, e.g. cache_soft_targets(ensemble, x, y, "
                "temperature=4.0)."
            )
        members = teacher.predict_member_logits(x, batch_size=batch_size)
        logits = mean_logits(members, validate.temperature(temperature), teacher.mean)
    elif distribution.is_multi_process():  # this process's rows only (kdlib.distribution)
        logits = distribution.predict_local(teacher, x, batch_size=batch_size)
    else:
        logits = teacher.predict(x, batch_size=batch_size, verbose=verbose)
    logits = np.asarray(logits, dtype=np.float32)
    return {
        LABELS_KEY: y,
        TEACHER_LOGITS_KEY: check_teacher_logits(logits, n, "cache_soft_targets"),
    }


def describe_cache(targets: dict[str, Any]) -> str:
    """One line saying how many logits a cache holds and how much memory they take."""
    logits = targets[TEACHER_LOGITS_KEY]
    n, k = logits.shape
    size = cache_size_bytes(int(n), int(k))
    return f"{n:,} examples x {k} classes of float32 logits = {_human_bytes(size)}"


def _human_bytes(size: int) -> str:
    if size <= 0:
        return "0 B"
    units = ("B", "kB", "MB", "GB", "TB")
    power = min(int(math.log10(size) // 3), len(units) - 1)
    return f"{size / 1000**power:.1f} {units[power]}"
