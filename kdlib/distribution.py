r"""Several devices and processes: which rows each process feeds, and its teacher's logits.

With the Keras distribution API on JAX (``keras.distribution.DataParallel``) every process
runs the same program and feeds *its share* of each global batch; the devices of all the
processes together compute the step on the whole batch, so the gradient is that of the global
mean, as on one device. For a global batch of :math:`m` rows (the last one may be shorter)
and :math:`P` processes, process :math:`p` feeds rows

.. math:: [\,b + p\,m/P,\; b + (p + 1)\,m/P\,)

of the batch that starts at row :math:`b` (:func:`local_rows`); the process-local arrays are
laid side by side in process order to form the global batch, which is what
``jax.make_array_from_process_local_data`` does with a batch-sharded layout.

Cached soft targets follow the rows: each process runs the teacher over its own rows only
(:func:`predict_local`, used by :func:`kdlib.soft_targets.cache_soft_targets`), so the one-off
teacher pass is split over every device of every process and no logits cross the network.
Keras' ``predict`` cannot do that on several processes: it fetches the global output, which
spans devices that the process cannot address.

On one process (any backend, any number of local devices) everything here is the identity:
:func:`local_rows` keeps every row and :func:`predict_local` is ``model.predict``.

:func:`scope` is what ``kdlib distill --distribution`` (and the experiment's ``distribution``
setting) runs in: ``"mirrored"`` (``tf.distribute.MirroredStrategy`` over this machine's
devices, TensorFlow) or ``"data-parallel"`` (``keras.distribution.DataParallel`` over them,
JAX), one process; the batch size stays the global batch, so the training is that of one
device (tested by ``make test-distributed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

from kdlib import validate

__all__ = [
    "DISTRIBUTIONS",
    "scope",
    "check_available",
    "check_even_batches",
    "process_count",
    "process_index",
    "is_multi_process",
    "local_rows",
    "shard_rows",
    "predict_local",
]


#: The ways ``kdlib distill --distribution`` can spread a run over this machine's devices.
DISTRIBUTIONS = ("none", "mirrored", "data-parallel")
_BACKEND_OF = {"mirrored": "tensorflow", "data-parallel": "jax"}


def check_available(name: str) -> None:
    """Raise, before any training, unless distribution ``name`` can run here: ``mirrored``
    needs the TensorFlow backend, ``data-parallel`` JAX (the Keras distribution API), and
    both one process."""
    validate.one_of(name, DISTRIBUTIONS, "distribution")
    needed = _BACKEND_OF.get(name)
    if needed is not None and keras.backend.backend() != needed:
        raise ValueError(
            f"distribution {name!r} runs on the {needed} backend, but Keras runs on "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND={needed} before starting, or use "
            f"distribution {'data-parallel' if needed == 'tensorflow' else 'mirrored'!r} "
            f"on {'jax' if needed == 'tensorflow' else 'tensorflow'}."
        )
    if name != "none" and process_count() > 1:
        raise ValueError(
            f"distribution {name!r} spreads one process over its devices; this is process "
            f"{process_index()} of {process_count()}. For several processes, see "
            "docs/scale_out.md (keras.distribution with kdlib.distribution.shard_rows)."
        )


@contextmanager
def scope(name: str) -> Iterator[int]:
    """Build, train and evaluate in here to spread over this machine's devices; yields the
    number of replicas (devices that each take a slice of every batch; 1 for ``"none"``)."""
    check_available(name)
    if name == "mirrored":
        import tensorflow as tf  # distribution plumbing only

        strategy = tf.distribute.MirroredStrategy()
        with strategy.scope():
            yield int(strategy.num_replicas_in_sync)
    elif name == "data-parallel":
        devices = keras.distribution.list_devices()
        with keras.distribution.DataParallel(devices=devices).scope():
            yield len(devices)
    else:
        yield 1


def check_even_batches(sizes: dict[str, int], batch_sizes: tuple[int, ...], replicas: int) -> None:
    """Raise unless every batch of every split (the last, shorter one too) splits into
    ``replicas`` equal slices, as ``data-parallel`` needs (each device an equal share)."""
    replicas = validate.positive_int(replicas, "replicas", example=2)
    for batch in batch_sizes:
        if batch % replicas:
            raise ValueError(
                f"batch size {batch} does not split over {replicas} devices: use a multiple "
                f"of {replicas} (e.g. --batch-size {replicas * max(1, round(batch / replicas))})."
            )
        for split, n in sizes.items():
            last = n % batch
            if last % replicas:
                raise ValueError(
                    f"the {split} split's last batch has {last} images ({n} images, batch "
                    f"{batch}), which do not split over {replicas} devices; choose sizes that "
                    f"leave a multiple of {replicas} images in the last batch."
                )


def process_count() -> int:
    """Processes of the current JAX run (``jax.process_count()``); 1 on other backends."""
    if keras.backend.backend() != "jax":
        return 1
    import jax  # distribution plumbing only, never model or loss math

    return int(jax.process_count())


def process_index() -> int:
    """This process's index, from 0 to ``process_count() - 1`` (0 off JAX)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return int(jax.process_index())


def is_multi_process() -> bool:
    """Whether a Keras distribution spans several processes (JAX after
    ``keras.distribution.initialize``, with ``keras.distribution.set_distribution``)."""
    return keras.distribution.distribution() is not None and process_count() > 1


def local_rows(
    num_examples: int,
    global_batch_size: int,
    process: int | None = None,
    processes: int | None = None,
) -> np.ndarray:
    """Indices of the rows that ``process`` feeds when the rows are read in order.

    Every global batch of ``m`` rows (``global_batch_size``, or fewer for the last one) is cut
    into ``processes`` equal, contiguous parts and part ``p`` goes to process ``p``:
    rows ``[b + p * m / P, b + (p + 1) * m / P)`` of the batch starting at row ``b``. Read with
    ``batch_size = global_batch_size // processes`` and ``shuffle=False``, they give every
    process its part of the same global batches, in the same order, as one process reading all
    the rows with ``global_batch_size``.

    Parameters
    ----------
    num_examples : int
        Rows of the whole (global) training set.
    global_batch_size : int
        Rows per step over all processes; a multiple of ``processes``.
    process, processes : int, optional
        This process's index and the number of processes; default :func:`process_index` and
        :func:`process_count`.

    Raises
    ------
    ValueError
        If ``global_batch_size`` or the last, shorter batch does not split into equal parts.
    """
    n = validate.non_negative_int(num_examples, "num_examples", example=60_000)
    batch = validate.positive_int(global_batch_size, "global_batch_size", example=128)
    count = process_count() if processes is None else processes
    count = validate.positive_int(count, "processes", example=2)
    index = process_index() if process is None else process
    index = validate.non_negative_int(index, "process", example=0)
    if index >= count:
        raise ValueError(f"process={index} must be below processes={count}.")
    if batch % count:
        raise ValueError(
            f"global_batch_size={batch} does not split over {count} processes; use a "
            f"multiple of {count}, e.g. {count * max(1, round(batch / count))}."
        )
    last = n % batch
    if last % count:
        raise ValueError(
            f"The last global batch has {last} rows ({n} examples, global_batch_size={batch}), "
            f"which do not split over {count} processes: use a number of examples that leaves "
            f"a multiple of {count} rows in the last batch (e.g. drop {last % count})."
        )
    starts = np.arange(0, n, batch)
    sizes = np.minimum(batch, n - starts)
    parts = [
        np.arange(b + index * m // count, b + (index + 1) * m // count)
        for b, m in zip(starts, sizes)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def shard_rows(data: Any, global_batch_size: int) -> Any:
    """The rows of ``data`` (an array, or a dict/list of arrays of equal length, or ``None``)
    that this process feeds: ``data[local_rows(len, global_batch_size)]`` for each array."""
    leaves = [leaf for leaf in keras.tree.flatten(data) if leaf is not None]
    if not leaves:
        return data
    lengths = {len(leaf) for leaf in leaves}
    if len(lengths) != 1:
        raise ValueError(f"The arrays to shard have different lengths {sorted(lengths)}.")
    rows = local_rows(lengths.pop(), global_batch_size)
    return keras.tree.map_structure(lambda a: None if a is None else np.asarray(a)[rows], data)


def predict_local(model: keras.Model, x: Any, batch_size: int = 1024) -> np.ndarray:
    """``model``'s outputs (float32) for this process's rows ``x``, in inference mode.

    On one process this is ``model.predict``. Under a distribution over several processes
    every process must call it together with the same number of rows (checked), as for every
    step of a multi-process run: each batch of ``batch_size`` local rows joins the other
    processes' batches into one global array, the model runs on it on every device, and each
    process keeps the rows its own devices computed.
    """
    batch_size = validate.positive_int(batch_size, "batch_size", example=1024)
    if not is_multi_process():
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float32)
    import jax
    from jax.experimental import multihost_utils

    n = len(keras.tree.flatten(x)[0])
    sizes = np.asarray(multihost_utils.process_allgather(np.array([n, batch_size]))).reshape(-1, 2)
    if len({tuple(row) for row in sizes.tolist()}) != 1:
        raise ValueError(
            "predict_local() must be called by every process with the same number of rows "
            f"and the same batch_size; got (rows, batch_size) = {sizes.tolist()} by process. "
            "Give every process an equal share (kdlib.distribution.local_rows)."
        )
    distribution = keras.distribution.distribution()
    processes, local_devices = jax.process_count(), jax.local_device_count()

    def to_global(a: np.ndarray) -> Any:
        shape = (a.shape[0] * processes, *a.shape[1:])
        layout = distribution.get_data_layout(shape).backend_layout
        return jax.make_array_from_process_local_data(layout, a)

    def rows_of(a: Any, start: int, pad: int) -> np.ndarray:
        a = np.asarray(a[start : start + batch_size])
        return np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else a

    outputs = []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        pad = -rows % local_devices  # each local device takes an equal slice
        batch = keras.tree.map_structure(lambda a, s=start, p=pad: rows_of(a, s, p), x)
        output = model(keras.tree.map_structure(to_global, batch), training=False)
        shards = {s.index[0].start or 0: np.asarray(s.data) for s in output.addressable_shards}
        local = np.concatenate([shards[k] for k in sorted(shards)])
        if len(local) != rows + pad:
            raise RuntimeError(
                f"This process's devices computed {len(local)} rows of the batch instead of "
                f"{rows + pad}: predict_local() needs a batch-sharded distribution such as "
                "keras.distribution.DataParallel."
            )
        outputs.append(local[:rows])
    return np.concatenate(outputs).astype(np.float32)
