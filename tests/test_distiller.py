"""kdlib.Distiller: losses against numpy, a gradient step against the analytic update,
frozen teacher, errors, saving. Backend-agnostic except where marked."""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import keras
import numpy as np
import pytest
from conftest import INPUT_SHAPE, NUM_CLASSES
from helpers import time_limit
from reference import np_cross_entropy, np_distillation, np_mlp_forward, np_softmax, np_total_loss

import kdlib.losses
from kdlib import Distiller
from kdlib.soft_targets import cache_soft_targets, cache_soft_targets_dataset


def linear_model(seed: int, name: str, **dense_kwargs) -> keras.Model:
    """Flatten, then one Dense layer: logits = x W + b, easy to differentiate by hand."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(INPUT_SHAPE)
    flat = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(NUM_CLASSES, kernel_initializer=init, **dense_kwargs)(flat)
    return keras.Model(inputs, logits, name=name)


def np_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np_mlp_forward(model.get_weights(), x)


def test_evaluate_matches_numpy(toy_data, make_distiller):
    x, y = toy_data
    distiller = make_distiller(alpha=0.3, temperature=2.5)
    result = distiller.evaluate(x, y, batch_size=len(x), return_dict=True, verbose=0)
    t, s = np_logits(distiller.teacher, x), np_logits(distiller.student, x)
    student_loss = np_cross_entropy(y, s).mean()
    distill_loss = np_distillation(t, s, 2.5).mean()
    assert set(result) == {"loss", "student_loss", "distillation_loss", "accuracy"}
    np.testing.assert_allclose(result["student_loss"], student_loss, rtol=1e-5)
    np.testing.assert_allclose(result["distillation_loss"], distill_loss, rtol=1e-4)
    np.testing.assert_allclose(result["loss"], 0.3 * student_loss + 0.7 * distill_loss, rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], np.mean(s.argmax(-1) == y), atol=1e-7)


def test_one_sgd_step_matches_analytic_gradient(toy_data, make_distiller):
    """W <- W - lr * X^T G with G = d(total)/d(logits) written out by hand."""
    x, y = toy_data
    alpha, temp, lr = 0.25, 3.0, 0.5
    teacher, student = linear_model(1, "teacher"), linear_model(2, "student")
    distiller = make_distiller(
        teacher, student, optimizer=keras.optimizers.SGD(lr), alpha=alpha, temperature=temp
    )
    xf = x.reshape(len(x), -1).astype(np.float64)
    w0, b0 = (np.asarray(v, np.float64) for v in student.get_weights())
    t, s = np_logits(teacher, x), xf @ w0 + b0
    n = len(x)
    g = (
        alpha * (np_softmax(s) - np.eye(NUM_CLASSES)[y]) / n
        + (1 - alpha) * temp * (np_softmax(s, temp) - np_softmax(t, temp)) / n
    )
    distiller.train_on_batch(x, y)
    w1, b1 = student.get_weights()
    np.testing.assert_allclose(w1, w0 - lr * xf.T @ g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b1, b0 - lr * g.sum(0), rtol=1e-4, atol=1e-6)


def test_student_regulariser_is_added_to_the_loss(toy_data, make_distiller):
    x, y = toy_data
    student = linear_model(2, "student", kernel_regularizer=keras.regularizers.L2(0.1))
    distiller = make_distiller(student=student)
    result = distiller.evaluate(x, y, batch_size=len(x), return_dict=True, verbose=0)
    t, s = np_logits(distiller.teacher, x), np_logits(student, x)
    w = student.get_weights()[0].astype(np.float64)
    expected = (
        0.3 * np_cross_entropy(y, s).mean()
        + 0.7 * np_distillation(t, s, 4.0).mean()
        + 0.1 * np.sum(w**2)
    )
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


def test_fit_reports_each_loss_and_keeps_the_teacher_frozen(toy_data, make_distiller):
    x, y = toy_data
    inputs = keras.Input(INPUT_SHAPE)
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    hidden = keras.layers.BatchNormalization()(hidden)  # moving statistics must not move
    teacher = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(hidden), name="teacher")
    distiller = make_distiller(teacher=teacher, alpha=0.4)
    before = [w.copy() for w in teacher.get_weights()]
    history = distiller.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(x, y))
    h = {k: np.array(v) for k, v in history.history.items()}
    assert all(len(v) == 2 for v in h.values())
    for prefix in ("", "val_"):
        np.testing.assert_allclose(
            h[prefix + "loss"],
            0.4 * h[prefix + "student_loss"] + 0.6 * h[prefix + "distillation_loss"],
            rtol=1e-5,
        )
    # Validation runs after the last step: the final student against numpy (the teacher's
    # logits from the teacher itself, in inference mode).
    t = keras.ops.convert_to_numpy(teacher(x, training=False))
    s = np_logits(distiller.student, x)
    np.testing.assert_allclose(h["val_student_loss"][-1], np_cross_entropy(y, s).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        h["val_distillation_loss"][-1], np_distillation(t, s, 4.0).mean(), rtol=1e-4
    )
    np.testing.assert_allclose(h["val_accuracy"][-1], np.mean(s.argmax(-1) == y), atol=1e-7)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(b, a)
    assert teacher.trainable is False
    assert len(distiller.trainable_weights) == len(distiller.student.trainable_weights)


def test_call_and_predict_give_student_logits(toy_data, make_distiller):
    x, _ = toy_data
    distiller = make_distiller()
    expected = np_logits(distiller.student, x)
    np.testing.assert_allclose(distiller.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    got = keras.ops.convert_to_numpy(distiller(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_alpha_extremes_leave_one_loss(toy_data, make_distiller):
    x, y = toy_data
    distiller = make_distiller()
    t, s = np_logits(distiller.teacher, x), np_logits(distiller.student, x)
    expected = {1.0: np_cross_entropy(y, s).mean(), 0.0: np_distillation(t, s, 4.0).mean()}
    for alpha, loss in expected.items():
        distiller.alpha = alpha  # compute_loss reads it on every call
        total = distiller.compute_loss(x, y, training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(total), loss, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data needs TensorFlow")
def test_tf_data_trains_like_numpy_arrays(toy_data, make_distiller):
    import tensorflow as tf

    x, y = toy_data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    from_ds, from_np = make_distiller(), make_distiller()
    from_ds.fit(ds, epochs=1, shuffle=False, verbose=0)
    from_np.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(from_np.student.get_weights(), from_ds.student.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    ev_ds = from_ds.evaluate(ds, return_dict=True, verbose=0)
    ev_np = from_ds.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    np.testing.assert_allclose(ev_ds["loss"], ev_np["loss"], rtol=1e-5)
    assert from_ds.predict(ds, verbose=0).shape == (len(x), NUM_CLASSES)


# ---------------------------------------------------------------- bad input
def test_keyword_only(make_teacher, make_student):
    with pytest.raises(TypeError):
        Distiller(make_teacher(), make_student())  # positional: must fail


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5x", "0.5", True])
def test_bad_alpha(bad, make_distiller):
    with pytest.raises(ValueError, match="alpha"):
        make_distiller(alpha=bad)


def test_output_shape_mismatch(make_teacher):
    student = keras.Sequential(
        [keras.Input(INPUT_SHAPE), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="shape"):
        Distiller(teacher=make_teacher(), student=student)


@pytest.mark.parametrize(
    "last",
    [
        lambda: [keras.layers.Dense(NUM_CLASSES, activation="softmax")],
        lambda: [keras.layers.Dense(NUM_CLASSES), keras.layers.Softmax()],
        lambda: [keras.layers.Dense(NUM_CLASSES), keras.layers.Activation("softmax")],
    ],
)
def test_softmax_teacher_is_refused(last, make_student):
    teacher = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Flatten(), *last()])
    with pytest.raises(ValueError, match="logits"):
        Distiller(teacher=teacher, student=make_student())


def test_fit_before_compile(toy_data, make_teacher, make_student):
    x, y = toy_data
    distiller = Distiller(teacher=make_teacher(), student=make_student())
    with pytest.raises(RuntimeError, match="compile"):
        distiller.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        distiller.evaluate(x, y, verbose=0)


def test_string_loss_is_refused(make_distiller):
    with pytest.raises(ValueError, match="from_logits=True"):
        make_distiller(student_loss_fn="sparse_categorical_crossentropy")


def test_not_a_model(make_student):
    with pytest.raises(TypeError, match="keras.Model"):
        Distiller(teacher=lambda x: x, student=make_student())


# ---------------------------------------------------------------- saving
def test_distiller_round_trip(tmp_path, toy_data, make_distiller):
    """Hyperparameters, compile options and the optimizer's state survive save and load:
    one more step from the restored copy lands on the original's weights."""
    x, y = toy_data
    # A compile argument beyond kdlib's own must survive too; PyTorch allows only 1.
    steps = 1 if keras.backend.backend() == "torch" else 2
    distiller = make_distiller(
        alpha=0.2,
        temperature=4.0,
        optimizer=keras.optimizers.Adam(0.01),
        steps_per_execution=steps,
    )
    distiller.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    restored = keras.models.load_model(path)  # no custom_objects needed
    assert isinstance(restored, Distiller)
    assert (restored.alpha, restored.temperature) == (0.2, 4.0)
    assert restored.steps_per_execution == steps
    assert float(restored.optimizer.learning_rate) == pytest.approx(0.01)
    ev = {
        name: model.evaluate(x, y, return_dict=True, verbose=0)
        for name, model in (("original", distiller), ("restored", restored))
    }
    for key in ev["original"]:
        np.testing.assert_allclose(ev["restored"][key], ev["original"][key], rtol=1e-6)
    for model in (distiller, restored):  # Adam's moments and step count were restored
        model.train_on_batch(x, y)
    for a, b in zip(distiller.student.get_weights(), restored.student.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


class _NoKdlib(importlib.abc.MetaPathFinder):
    """An import hook under which ``import kdlib`` (and any kdlib module) fails; it records
    the names it refused."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "kdlib":
            self.refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None


@contextmanager
def kdlib_hidden() -> Iterator[list[str]]:
    """Inside: kdlib neither imported nor importable, and none of its classes registered with
    Keras, as in a Python that never had kdlib. Yields the kdlib imports that were refused."""
    finder = _NoKdlib()
    with pytest.MonkeyPatch.context() as patch:
        for name in [m for m in sys.modules if m.partition(".")[0] == "kdlib"]:
            patch.delitem(sys.modules, name)
        registered = keras.saving.get_custom_objects()
        for name in [k for k in registered if k.startswith("kdlib>")]:
            patch.delitem(registered, name)
        sys.meta_path.insert(0, finder)
        try:
            yield finder.refused
        finally:
            sys.meta_path.remove(finder)


def test_student_loads_without_kdlib(tmp_path, toy_data, make_distiller):
    """A saved student is a plain Keras model: it loads and predicts the same logits with
    kdlib neither imported nor importable, and loading never tries to import it."""
    x, _ = toy_data
    student = make_distiller().student
    path = tmp_path / "student.keras"
    student.save(path)
    with zipfile.ZipFile(path) as zf:
        assert "kdlib" not in zf.read("config.json").decode()
    expected = np_logits(student, x)
    with kdlib_hidden() as refused:
        logits = keras.models.load_model(path).predict(x, verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert refused == [], f"loading the student tried to import {refused}"


def test_kdlib_hidden_really_hides_it(tmp_path, toy_data, make_distiller):
    """The check above can fail: a file that needs kdlib does not load while it is hidden,
    and loads again afterwards."""
    distiller = make_distiller()
    distiller(toy_data[0][:2])  # built, so that it saves its weights
    path = tmp_path / "model.keras"
    distiller.save(path)
    with kdlib_hidden() as refused:
        with pytest.raises(TypeError, match="Could not locate class 'Distiller'"):
            keras.models.load_model(path)
        with pytest.raises(ModuleNotFoundError):
            import kdlib  # noqa: F401
    assert refused == ["kdlib"]
    assert isinstance(keras.models.load_model(path), Distiller)


# ----------------------------------------- reliability on small dense models: every test alone
NUM_FEATURES, TOY_CLASSES, TOY_N = 6, 4, 32
ON_TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(not ON_TF, reason="needs TensorFlow (tf.data, name scopes)")


def dense(seed: int, name: str, hidden: int = 0, **last_kwargs) -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((NUM_FEATURES,))
    x = inputs
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init)(x)
    outputs = keras.layers.Dense(TOY_CLASSES, kernel_initializer=init, **last_kwargs)(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(TOY_N, NUM_FEATURES)).astype("float32")
    y = rng.integers(0, TOY_CLASSES, TOY_N).astype("int32")
    return x, y


def compiled(teacher=None, student=None, **kwargs) -> Distiller:
    distiller = Distiller(
        teacher=teacher or dense(1, "teacher", hidden=8), student=student or dense(2, "student")
    )
    kwargs.setdefault("alpha", 0.3)
    kwargs.setdefault("temperature", 2.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), **kwargs)
    return distiller


# ------------------------------------------------------------------------ reload
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


# ------------------------------------------------------------------------ lambdas
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


# ------------------------------------------------------- only the student's losses
def test_teacher_regularisation_is_not_added_and_modes_agree(toy):
    x, y = toy
    init = keras.initializers.GlorotUniform(seed=1)
    inputs = keras.Input((NUM_FEATURES,))
    outputs = keras.layers.Dense(
        TOY_CLASSES, kernel_initializer=init, activity_regularizer=keras.regularizers.L2(10.0)
    )(inputs)
    teacher = keras.Model(inputs, outputs)
    distiller = compiled(teacher=teacher)
    t = teacher.predict(x, verbose=0)
    s = distiller.student.predict(x, verbose=0)
    expected = np_total_loss(y, t, s, alpha=0.3, temperature=2.0)
    online = distiller.evaluate(x, y, batch_size=TOY_N, return_dict=True, verbose=0)
    cached = distiller.evaluate(
        x, {"labels": y, "teacher_logits": t}, batch_size=TOY_N, return_dict=True, verbose=0
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
    result = distiller.evaluate(x, y, batch_size=TOY_N, return_dict=True, verbose=0)
    np.testing.assert_allclose(
        result["loss"], np_total_loss(y, t, s, 0.3, 2.0) + penalty, rtol=1e-5
    )


# ------------------------------------------------------------ teacher is student
def test_same_model_as_teacher_and_student_is_refused():
    model = dense(1, "m")
    with pytest.raises(ValueError, match="same model"):
        Distiller(teacher=model, student=model)


def test_student_sharing_layers_with_the_teacher_is_refused():
    teacher = dense(1, "teacher", hidden=8)
    shared = teacher.layers[1]
    inputs = keras.Input((NUM_FEATURES,))
    student = keras.Model(inputs, keras.layers.Dense(TOY_CLASSES)(shared(inputs)))
    with pytest.raises(ValueError, match=shared.name):
        Distiller(teacher=teacher, student=student)


# ---------------------------------------------------- hidden softmax, online mode
class HiddenSoftmax(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(TOY_CLASSES)

    def call(self, inputs):
        return keras.ops.softmax(self.dense(inputs))


@pytest.mark.parametrize("kind", ["subclassed", "lambda", "reshape"])
def test_hidden_softmax_teacher_is_refused_in_online_mode(toy, kind):
    x, y = toy
    if kind == "subclassed":
        teacher = HiddenSoftmax()
    elif kind == "lambda":
        inputs = keras.Input((NUM_FEATURES,))
        logits = keras.layers.Dense(TOY_CLASSES)(inputs)
        teacher = keras.Model(inputs, keras.layers.Lambda(keras.ops.softmax)(logits))
    else:
        inputs = keras.Input((NUM_FEATURES,))
        probs = keras.layers.Dense(TOY_CLASSES, activation="softmax")(inputs)
        teacher = keras.Model(inputs, keras.layers.Reshape((TOY_CLASSES,))(probs))
    distiller = compiled(teacher=teacher)
    with pytest.raises(ValueError, match="probabilities"):
        distiller.fit(x, y, epochs=1, verbose=0)


# ------------------------------------------------------------ one rule for numbers
@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), np.array(0.5), 1])
def test_numpy_and_zero_d_numbers_are_accepted(value):
    distiller = Distiller(teacher=dense(1, "t"), student=dense(2, "s"))
    distiller.compile(alpha=min(float(value), 1.0), temperature=value)
    assert (distiller.alpha, distiller.temperature) == (min(float(value), 1.0), float(value))
    assert type(distiller.temperature) is float and type(distiller.alpha) is float


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


# ------------------------------------------------------- shapes at construction
def test_different_input_shapes_are_refused_at_construction():
    inputs = keras.Input((NUM_FEATURES + 1,))
    student = keras.Model(inputs, keras.layers.Dense(TOY_CLASSES)(inputs))
    with pytest.raises(ValueError, match=r"input.*\(None, 6\).*\(None, 7\)"):
        Distiller(teacher=dense(1, "t"), student=student)


@pytest.mark.parametrize("structure", ["two outputs", "dict output"])
def test_multi_output_models_are_refused_at_construction(structure):
    inputs = keras.Input((NUM_FEATURES,))
    a, b = keras.layers.Dense(TOY_CLASSES)(inputs), keras.layers.Dense(TOY_CLASSES)(inputs)
    outputs = [a, b] if structure == "two outputs" else {"logits": a, "aux": b}
    with pytest.raises(ValueError, match="one output"):
        Distiller(teacher=dense(1, "t"), student=keras.Model(inputs, outputs))


# -------------------------------------------------------------- call(**kwargs)
def test_call_passes_keras_keyword_arguments_to_the_student(toy):
    x, _ = toy
    distiller = compiled()
    out = distiller(x, training=False, mask=None)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), distiller.student.predict(x, verbose=0), rtol=1e-6
    )


# ------------------------------------------------------------ clearer messages
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
        batch_size=TOY_N,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    b = compiled().fit(
        x,
        {"labels": y, "teacher_logits": t},
        sample_weight=np.array([weights[int(c)] for c in y], "float32"),
        batch_size=TOY_N,
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


# ----------------------------------------------------- infinite dataset refused
@needs_tf
def test_caching_an_infinite_dataset_is_refused_up_front(toy):
    import tensorflow as tf

    x, y = toy
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with time_limit(20), pytest.raises(ValueError, match="infinite"):
        cache_soft_targets_dataset(dense(1, "t"), ds, verbose=0)
