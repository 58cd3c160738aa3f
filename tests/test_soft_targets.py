"""Cached soft targets: same loss and same training as the online mode, teacher not called.

References are independent of kdlib: a numpy forward pass of the teacher, numpy formulas
for the losses, and the online mode for the cached one. Backend-agnostic except the
``tf.data`` tests, which need the ``tensorflow`` package.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
from conftest import ALPHA, INPUT_SHAPE, NUM_CLASSES, TEMPERATURE, N
from reference import np_mlp_forward, np_total_loss

from kdlib.soft_targets import (
    cache_size_bytes,
    cache_soft_targets,
    cache_soft_targets_dataset,
    describe_cache,
)


@pytest.fixture
def teacher(make_teacher):
    return make_teacher()


class CountingTeacher(keras.Model):
    """A teacher that counts how often it is called (in eager mode: once per batch)."""

    def __init__(self, inner: keras.Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inner = inner
        self.calls = 0

    def call(self, inputs, training=None):
        self.calls += 1
        return self.inner(inputs, training=training)


# ---------------------------------------------------------------- the cache itself
def test_cache_is_the_inference_forward_pass(toy_data, teacher):
    x, y = toy_data
    targets = cache_soft_targets(teacher, x, y, batch_size=32, verbose=0)
    assert set(targets) == {"labels", "teacher_logits"}
    assert targets["labels"] is y
    logits = targets["teacher_logits"]
    assert isinstance(logits, np.ndarray)
    assert logits.dtype == np.float32 and logits.shape == (N, NUM_CLASSES)
    np.testing.assert_allclose(
        logits, np_mlp_forward(teacher.get_weights(), x), rtol=1e-5, atol=1e-5
    )


def test_batch_size_does_not_change_the_cache(toy_data, teacher):
    x, y = toy_data
    small = cache_soft_targets(teacher, x, y, batch_size=7, verbose=0)["teacher_logits"]
    large = cache_soft_targets(teacher, x, y, verbose=0)["teacher_logits"]
    np.testing.assert_allclose(small, large, rtol=1e-6, atol=1e-6)


def test_memory_cost():
    assert cache_size_bytes(60_000, 10) == 2_400_000  # MNIST: 2.4 MB
    assert cache_size_bytes(1_281_167, 1000) == 5_124_668_000  # ImageNet-1k: 5.1 GB
    targets = {"labels": None, "teacher_logits": np.zeros((60_000, 10), np.float32)}
    assert describe_cache(targets) == "60,000 examples x 10 classes of float32 logits = 2.4 MB"
    with pytest.raises(ValueError, match="num_classes"):
        cache_size_bytes(10, -1)


# ---------------------------------------------------------------- same loss, same training
def test_cached_and_online_give_the_numpy_loss_for_the_same_batch(
    toy_data, teacher, make_student, make_distiller
):
    x, y = toy_data
    student = make_student()
    distiller = make_distiller(teacher, student)
    targets = cache_soft_targets(teacher, x, y, verbose=0)
    expected = np_total_loss(
        y,
        np_mlp_forward(teacher.get_weights(), x),
        np_mlp_forward(student.get_weights(), x),
        ALPHA,
        TEMPERATURE,
    )
    online = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    cached = distiller.evaluate(x, targets, batch_size=N, return_dict=True, verbose=0)
    assert set(online) == set(cached) == {"loss", "student_loss", "distillation_loss", "accuracy"}
    np.testing.assert_allclose(online["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(cached["loss"], expected, rtol=1e-5)
    for key in online:
        np.testing.assert_allclose(cached[key], online[key], rtol=1e-5)


#: Batches of the training runs below: 96 examples make batches of 40, 40 and 16 (a short last
#: batch, which the loss must weight like the others).
BATCH = 40
_NUMPY_CACHE_RUN: dict[str, object] = {}


def numpy_cache_run(x, y, teacher, make_student, make_distiller):
    """The reference of the training tests below, computed once: the toy Distiller trained on
    soft targets cached from numpy arrays, two epochs of unshuffled batches of ``BATCH``,
    validated on the same targets. Returns its ``History.history`` and the student's weights
    (``teacher`` is conftest's, the same weights in every test)."""
    if not _NUMPY_CACHE_RUN:
        targets = cache_soft_targets(teacher, x, y, verbose=0)
        student = make_student()
        distiller = make_distiller(teacher, student)
        history = distiller.fit(
            x,
            targets,
            epochs=2,
            batch_size=BATCH,
            shuffle=False,
            verbose=0,
            validation_data=(x, targets),
        )
        _NUMPY_CACHE_RUN["run"] = history.history, student.get_weights()
    return _NUMPY_CACHE_RUN["run"]


def test_cached_and_online_train_the_same_student(toy_data, teacher, make_student, make_distiller):
    x, y = toy_data
    h_cached, w_cached = numpy_cache_run(x, y, teacher, make_student, make_distiller)
    student = make_student()
    distiller = make_distiller(teacher, student)
    history = distiller.fit(
        x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0, validation_data=(x, y)
    )
    h_online, w_online = history.history, student.get_weights()
    assert set(h_online) == set(h_cached)
    assert {"loss", "student_loss", "distillation_loss", "val_loss"} <= set(h_online)
    for key in h_online:
        np.testing.assert_allclose(h_cached[key], h_online[key], rtol=1e-5, err_msg=key)
    for a, b in zip(w_online, w_cached):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_cached_mode_never_calls_the_teacher(toy_data, teacher, make_student, make_distiller):
    x, y = toy_data
    targets = cache_soft_targets(teacher, x, y, verbose=0)
    weights_before = [w.copy() for w in teacher.get_weights()]
    counting = CountingTeacher(teacher)
    distiller = make_distiller(counting, make_student(), run_eagerly=True)
    distiller.fit(x, targets, epochs=1, batch_size=32, verbose=0)
    distiller.evaluate(x, targets, batch_size=32, verbose=0)
    assert counting.calls == 0
    # The counter works: the online mode calls the teacher once per batch (and once on the
    # first rows, to check that its outputs are logits).
    distiller.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert counting.calls == N // 32 + 1
    for before, after in zip(weights_before, teacher.get_weights()):
        np.testing.assert_array_equal(after, before)


# ---------------------------------------------------------------- bad input
def test_length_mismatch(toy_data, teacher):
    x, y = toy_data
    with pytest.raises(ValueError, match=f"{N} examples but y has {N - 1} labels"):
        cache_soft_targets(teacher, x, y[:-1], verbose=0)


def test_missing_labels(toy_data, teacher):
    with pytest.raises(ValueError, match="labels"):
        cache_soft_targets(teacher, toy_data[0], None, verbose=0)


def test_softmax_layer_teacher_is_refused(toy_data):
    inputs = keras.Input(INPUT_SHAPE)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="applies softmax"):
        cache_soft_targets(keras.Model(inputs, outputs), *toy_data, verbose=0)


def test_probability_outputs_are_refused(toy_data):
    # A softmax hidden inside a Lambda: only the outputs give it away.
    inputs = keras.Input(INPUT_SHAPE)
    logits = keras.layers.Dense(NUM_CLASSES)(keras.layers.Flatten()(inputs))
    probs = keras.layers.Lambda(lambda z: keras.ops.softmax(z))(logits)
    with pytest.raises(ValueError, match="look like probabilities"):
        cache_soft_targets(keras.Model(inputs, probs), *toy_data, verbose=0)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "64"])
def test_bad_batch_size(toy_data, teacher, bad):
    with pytest.raises(ValueError, match="batch_size"):
        cache_soft_targets(teacher, *toy_data, batch_size=bad, verbose=0)


def test_teacher_must_be_a_model(toy_data):
    with pytest.raises(TypeError, match="keras.Model"):
        cache_soft_targets(np.zeros((N, NUM_CLASSES)), *toy_data)


def test_cached_targets_of_wrong_width_are_refused(
    toy_data, teacher, make_student, make_distiller
):
    x, y = toy_data
    distiller = make_distiller(teacher, make_student())
    wrong = {"labels": y, "teacher_logits": np.zeros((N, NUM_CLASSES + 1), np.float32)}
    with pytest.raises(ValueError, match="one logit per class"):
        distiller.evaluate(x, wrong, batch_size=32, verbose=0)


# ---------------------------------------------------------------- tf.data
def _dataset(x, y, batch_size=32):
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def test_dataset_cache_trains_like_the_numpy_cache(
    toy_data, teacher, make_student, make_distiller
):
    x, y = toy_data
    cached_ds = cache_soft_targets_dataset(teacher, _dataset(x, y, BATCH), verbose=0)
    batches = list(cached_ds.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [40, 40, 16]
    logits = np.concatenate([b[1]["teacher_logits"] for b in batches])
    np.testing.assert_allclose(
        logits, np_mlp_forward(teacher.get_weights(), x), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(np.concatenate([b[1]["labels"] for b in batches]), y)

    # Trained like the numpy cache's run (validation does not change the weights).
    _, w_numpy = numpy_cache_run(x, y, teacher, make_student, make_distiller)
    student = make_student()
    make_distiller(teacher, student).fit(cached_ds, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(w_numpy, student.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_reshuffling_dataset_is_detected(toy_data, teacher):
    tf = pytest.importorskip("tensorflow")
    x, y = toy_data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(N, seed=3).batch(32)
    cached_ds = cache_soft_targets_dataset(teacher, ds, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="changed order"):
        for _ in range(3):  # a reshuffle could repeat the order by chance; not thrice
            list(cached_ds.as_numpy_iterator())


def test_dataset_structure_errors(toy_data, teacher):
    tf = pytest.importorskip("tensorflow")
    x, y = toy_data
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        cache_soft_targets_dataset(teacher, tf.data.Dataset.from_tensor_slices(x).batch(8))
    irregular = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).unbatch().batch(20)
    irregular = irregular.concatenate(tf.data.Dataset.from_tensor_slices((x, y)).batch(32))
    with pytest.raises(ValueError, match="equal batches"):
        cache_soft_targets_dataset(teacher, irregular, verbose=0)
    with pytest.raises(TypeError, match="cache_soft_targets_dataset"):
        cache_soft_targets(teacher, _dataset(x, y), y)
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        cache_soft_targets_dataset(teacher, (x, y))


def test_dataset_helper_without_tensorflow_says_so(monkeypatch, teacher):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(RuntimeError, match="needs TensorFlow"):
        cache_soft_targets_dataset(teacher, None)
