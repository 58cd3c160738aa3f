"""Issue 9, the Distiller items (1, 3, 11-13, 15-18) and soft targets (4, 18): each test
reproduces a reported failure. Tiny dense models on 6 features, a few dozen rows."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import time_limit
from reference import np_total_loss

import kdlib.losses
from kdlib import Distiller
from kdlib.soft_targets import cache_soft_targets, cache_soft_targets_dataset

NUM_FEATURES, NUM_CLASSES, N = 6, 4, 32
ON_TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(not ON_TF, reason="needs TensorFlow (tf.data, name scopes)")


def dense(seed: int, name: str, hidden: int = 0, **last_kwargs) -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((NUM_FEATURES,))
    x = inputs
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init)(x)
    outputs = keras.layers.Dense(NUM_CLASSES, kernel_initializer=init, **last_kwargs)(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, NUM_FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, N).astype("int32")
    return x, y


def compiled(teacher=None, student=None, **kwargs) -> Distiller:
    distiller = Distiller(
        teacher=teacher or dense(1, "teacher", hidden=8), student=student or dense(2, "student")
    )
    kwargs.setdefault("alpha", 0.3)
    kwargs.setdefault("temperature", 2.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), **kwargs)
    return distiller


# ------------------------------------------------------------------------ item 1: reload
def test_saved_distiller_reloads_after_plain_import_kdlib(tmp_path, toy):
    """`import kdlib, keras; keras.models.load_model(...)` in a new process, no custom_objects
    (also a ModelCheckpoint file). `import keras` before `import kdlib` registers at once
    (what every in-process round-trip test does: conftest imports keras first)."""
    x, y = toy
    distiller = compiled()
    checkpoint = tmp_path / "ckpt.keras"
    callback = keras.callbacks.ModelCheckpoint(str(checkpoint))
    distiller.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    path = tmp_path / "d.keras"
    distiller.save(path)
    code = (
        "import sys\n"
        "import kdlib\n"
        "import keras\n"
        "for p in sys.argv[1:]:\n"
        "    m = keras.models.load_model(p)\n"
        "    assert type(m).__name__ == 'Distiller' and m.temperature == 2.0, m\n"
        # Every check has passed: skip TensorFlow's interpreter teardown (about a second).
        "import os\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(checkpoint)], check=True)


def test_import_kdlib_registers_every_kdlib_keras_class():
    registered = {
        name: obj.__module__
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("kdlib>")
    }
    assert registered == kdlib.KERAS_CLASSES


# ------------------------------------------------------------------------ item 3: lambdas
@needs_tf
def test_lambda_losses_train_and_leave_keras_working(toy):
    x, y = toy
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    distiller = compiled(
        student_loss_fn=lambda yt, yp: ce(yt, yp),
        distillation_loss_fn=lambda t, s: keras.ops.mean((t - s) ** 2, axis=-1),
    )
    history = distiller.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    plain = dense(3, "plain")  # the process must not be left broken
    plain.compile(optimizer="sgd", loss=ce)
    assert np.isfinite(plain.fit(x, y, epochs=1, verbose=0).history["loss"][0])


# ------------------------------------------------------- item 11: only the student's losses
def test_teacher_regularisation_is_not_added_and_modes_agree(toy):
    x, y = toy
    init = keras.initializers.GlorotUniform(seed=1)
    inputs = keras.Input((NUM_FEATURES,))
    outputs = keras.layers.Dense(
        NUM_CLASSES, kernel_initializer=init, activity_regularizer=keras.regularizers.L2(10.0)
    )(inputs)
    teacher = keras.Model(inputs, outputs)
    distiller = compiled(teacher=teacher)
    t = teacher.predict(x, verbose=0)
    s = distiller.student.predict(x, verbose=0)
    expected = np_total_loss(y, t, s, alpha=0.3, temperature=2.0)
    online = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    cached = distiller.evaluate(
        x, {"labels": y, "teacher_logits": t}, batch_size=N, return_dict=True, verbose=0
    )
    np.testing.assert_allclose(online["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(cached["loss"], expected, rtol=1e-5)


def test_student_regularisation_still_counts(toy):
    x, y = toy
    student = dense(2, "student", kernel_regularizer=keras.regularizers.L2(0.5))
    distiller = compiled(student=student)
    t = distiller.teacher.predict(x, verbose=0)
    s = student.predict(x, verbose=0)
    penalty = 0.5 * np.sum(np.square(student.layers[-1].kernel.numpy()))
    result = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        result["loss"], np_total_loss(y, t, s, 0.3, 2.0) + penalty, rtol=1e-5
    )


# ------------------------------------------------------------ item 12: teacher is student
def test_same_model_as_teacher_and_student_is_refused():
    model = dense(1, "m")
    with pytest.raises(ValueError, match="same model"):
        Distiller(teacher=model, student=model)


def test_student_sharing_layers_with_the_teacher_is_refused():
    teacher = dense(1, "teacher", hidden=8)
    shared = teacher.layers[1]
    inputs = keras.Input((NUM_FEATURES,))
    student = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(shared(inputs)))
    with pytest.raises(ValueError, match=shared.name):
        Distiller(teacher=teacher, student=student)


# ---------------------------------------------------- item 13: hidden softmax, online mode
class HiddenSoftmax(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(NUM_CLASSES)

    def call(self, inputs):
        return keras.ops.softmax(self.dense(inputs))


@pytest.mark.parametrize("kind", ["subclassed", "lambda", "reshape"])
def test_hidden_softmax_teacher_is_refused_in_online_mode(toy, kind):
    x, y = toy
    if kind == "subclassed":
        teacher = HiddenSoftmax()
    elif kind == "lambda":
        inputs = keras.Input((NUM_FEATURES,))
        logits = keras.layers.Dense(NUM_CLASSES)(inputs)
        teacher = keras.Model(inputs, keras.layers.Lambda(keras.ops.softmax)(logits))
    else:
        inputs = keras.Input((NUM_FEATURES,))
        probs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(inputs)
        teacher = keras.Model(inputs, keras.layers.Reshape((NUM_CLASSES,))(probs))
    distiller = compiled(teacher=teacher)
    with pytest.raises(ValueError, match="probabilities"):
        distiller.fit(x, y, epochs=1, verbose=0)


# ------------------------------------------------------------ item 15: one rule for numbers
@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), np.array(0.5), 1])
def test_numpy_and_zero_d_numbers_are_accepted(value):
    distiller = Distiller(teacher=dense(1, "t"), student=dense(2, "s"))
    distiller.compile(alpha=min(float(value), 1.0), temperature=value)
    distiller.compile(alpha=np.float32(0.5) if value != 1 else value, temperature=2.0)


@needs_tf
def test_zero_d_tensors_are_accepted():
    import tensorflow as tf

    distiller = Distiller(teacher=dense(1, "t"), student=dense(2, "s"))
    distiller.compile(alpha=tf.constant(0.25), temperature=tf.constant(3.0))
    assert (distiller.alpha, distiller.temperature) == (0.25, 3.0)


@pytest.mark.parametrize("argument", ["alpha", "temperature"])
@pytest.mark.parametrize("bad", ["0.5", True, np.array([0.5])])
def test_strings_bools_and_arrays_are_refused_for_both(argument, bad):
    distiller = Distiller(teacher=dense(1, "t"), student=dense(2, "s"))
    with pytest.raises(ValueError, match=f"{argument} must be .*number.*got"):
        distiller.compile(**{argument: bad})


# ------------------------------------------------------- item 16: shapes at construction
def test_different_input_shapes_are_refused_at_construction():
    inputs = keras.Input((NUM_FEATURES + 1,))
    student = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(inputs))
    with pytest.raises(ValueError, match=r"input.*\(None, 6\).*\(None, 7\)"):
        Distiller(teacher=dense(1, "t"), student=student)


@pytest.mark.parametrize("structure", ["two outputs", "dict output"])
def test_multi_output_models_are_refused_at_construction(structure):
    inputs = keras.Input((NUM_FEATURES,))
    a, b = keras.layers.Dense(NUM_CLASSES)(inputs), keras.layers.Dense(NUM_CLASSES)(inputs)
    outputs = [a, b] if structure == "two outputs" else {"logits": a, "aux": b}
    with pytest.raises(ValueError, match="one output"):
        Distiller(teacher=dense(1, "t"), student=keras.Model(inputs, outputs))


# -------------------------------------------------------------- item 17: call(**kwargs)
def test_call_passes_keras_keyword_arguments_to_the_student(toy):
    x, _ = toy
    distiller = compiled()
    out = distiller(x, training=False, mask=None)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), distiller.student.predict(x, verbose=0), rtol=1e-6
    )


# ------------------------------------------------------------ item 18: clearer messages
def test_scalar_logits_are_refused_with_kdlib_message():
    def scalar_model():
        inputs = keras.Input((NUM_FEATURES,))
        return keras.Model(inputs, keras.layers.Reshape(())(keras.layers.Dense(1)(inputs)))

    with pytest.raises(ValueError, match="one logit per class"):
        Distiller(teacher=scalar_model(), student=scalar_model())
    with pytest.raises(ValueError, match="one value per class"):
        kdlib.losses.distillation_loss(1.0, 2.0, 2.0)


def test_softmax_of_inputs_of_rank_above_five(toy):
    z = np.random.default_rng(0).normal(size=(2, 1, 2, 1, 2, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(kdlib.losses.softmax_with_temperature(z, 2.0))
    e = np.exp(z / 2.0 - (z / 2.0).max(-1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-6)


def test_fit_without_labels_says_so(toy):
    x, _ = toy
    with pytest.raises(ValueError, match="labels"):
        compiled().fit(x, None, epochs=1, verbose=0)


@needs_tf
def test_unbatched_dataset_says_batch_it(toy):
    import tensorflow as tf

    x, y = toy
    ds = tf.data.Dataset.from_tensor_slices((x, y))  # no .batch()
    with pytest.raises(ValueError, match=r"\.batch\("):
        compiled().fit(ds, epochs=1, verbose=0)


def test_class_weight_works_with_cached_targets(toy):
    x, y = toy
    weights = {0: 1.0, 1: 2.0, 2: 0.5, 3: 1.5}
    distiller = compiled()
    t = distiller.teacher.predict(x, verbose=0)
    a = compiled().fit(
        x,
        {"labels": y, "teacher_logits": t},
        class_weight=weights,
        batch_size=N,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    b = compiled().fit(
        x,
        {"labels": y, "teacher_logits": t},
        sample_weight=np.array([weights[int(c)] for c in y], "float32"),
        batch_size=N,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)


def test_cache_soft_targets_on_an_empty_array_says_so():
    with pytest.raises(ValueError, match="empty"):
        cache_soft_targets(
            dense(1, "t"), np.zeros((0, NUM_FEATURES), "float32"), np.zeros((0,), "int32")
        )


@needs_tf
def test_tensorboard_callback_works_from_the_install(toy, tmp_path):
    x, y = toy
    compiled().fit(
        x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.TensorBoard(log_dir=str(tmp_path))]
    )
    assert list(tmp_path.rglob("events.out.tfevents.*"))


# ----------------------------------------------------- item 4: infinite dataset refused
@needs_tf
def test_caching_an_infinite_dataset_is_refused_up_front(toy):
    import tensorflow as tf

    x, y = toy
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with time_limit(20), pytest.raises(ValueError, match="infinite"):
        cache_soft_targets_dataset(dense(1, "t"), ds, verbose=0)
