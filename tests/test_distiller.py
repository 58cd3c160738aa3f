"""kdlib.Distiller: losses against numpy, a gradient step against the analytic update,
frozen teacher, errors, saving. Backend-agnostic except where marked."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from reference import np_cross_entropy, np_distillation, np_softmax

from kdlib import Distiller, models

NUM_FEATURES, NUM_CLASSES = 6, 4


def dense_model(seed: int, name: str, hidden: int = 0) -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((NUM_FEATURES,))
    x = inputs
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(NUM_CLASSES, kernel_initializer=init)(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, NUM_FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, 64).astype("int32")
    return x, y


def make_distiller(alpha=0.3, temperature=2.5, optimizer="adam", **compile_kwargs):
    distiller = Distiller(
        teacher=dense_model(1, "teacher", hidden=16), student=dense_model(2, "student")
    )
    distiller.compile(
        optimizer=optimizer,
        metrics=["accuracy"],
        alpha=alpha,
        temperature=temperature,
        **compile_kwargs,
    )
    return distiller


def test_evaluate_matches_numpy(toy):
    x, y = toy
    alpha, temp = 0.3, 2.5
    distiller = make_distiller(alpha, temp)
    result = distiller.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    t = distiller.teacher.predict(x, verbose=0)
    s = distiller.student.predict(x, verbose=0)
    student_loss = np_cross_entropy(y, s).mean()
    distill_loss = np_distillation(t, s, temp).mean()
    assert set(result) == {"loss", "student_loss", "distillation_loss", "accuracy"}
    np.testing.assert_allclose(result["student_loss"], student_loss, rtol=1e-5)
    np.testing.assert_allclose(result["distillation_loss"], distill_loss, rtol=1e-4)
    np.testing.assert_allclose(
        result["loss"], alpha * student_loss + (1 - alpha) * distill_loss, rtol=1e-5
    )
    np.testing.assert_allclose(result["accuracy"], np.mean(s.argmax(-1) == y), atol=1e-7)


def test_one_sgd_step_matches_analytic_gradient(toy):
    """W <- W - lr * X^T G with G = d(total)/d(logits) written out by hand."""
    x, y = toy
    alpha, temp, lr = 0.25, 3.0, 0.5
    teacher = dense_model(1, "teacher")
    student = dense_model(2, "student")
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr), alpha=alpha, temperature=temp
    )
    w0, b0 = (np.asarray(v, np.float64) for v in student.get_weights())
    t = x.astype(np.float64) @ teacher.get_weights()[0] + teacher.get_weights()[1]
    s = x.astype(np.float64) @ w0 + b0
    onehot = np.eye(NUM_CLASSES)[y]
    n = len(x)
    g = (
        alpha * (np_softmax(s) - onehot) / n
        + (1 - alpha) * temp * (np_softmax(s, temp) - np_softmax(t, temp)) / n
    )
    distiller.train_on_batch(x, y)
    w1, b1 = student.get_weights()
    np.testing.assert_allclose(w1, w0 - lr * x.T.astype(np.float64) @ g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b1, b0 - lr * g.sum(0), rtol=1e-4, atol=1e-6)


def test_fit_history_and_frozen_teacher(toy):
    x, y = toy
    distiller = make_distiller(alpha=0.4)
    before = [w.copy() for w in distiller.teacher.get_weights()]  # incl. BatchNorm statistics
    student_before = [w.copy() for w in distiller.student.get_weights()]
    history = distiller.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y))
    for key in (
        "loss",
        "student_loss",
        "distillation_loss",
        "accuracy",
        "val_loss",
        "val_student_loss",
        "val_distillation_loss",
        "val_accuracy",
    ):
        assert key in history.history and len(history.history[key]) == 2
        assert np.all(np.isfinite(history.history[key]))
    for prefix in ("", "val_"):
        h = {
            k: np.array(history.history[prefix + k])
            for k in ("loss", "student_loss", "distillation_loss")
        }
        np.testing.assert_allclose(
            h["loss"], 0.4 * h["student_loss"] + 0.6 * h["distillation_loss"], rtol=1e-5
        )
    after = distiller.teacher.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "teacher changed"
    assert not all(
        np.array_equal(a, b) for a, b in zip(student_before, distiller.student.get_weights())
    ), "student did not train"
    assert distiller.teacher.trainable is False
    assert len(distiller.trainable_weights) == len(distiller.student.trainable_weights)


def test_call_and_predict_give_student_logits(toy):
    x, _ = toy
    distiller = make_distiller()
    np.testing.assert_allclose(
        distiller.predict(x, verbose=0), distiller.student.predict(x, verbose=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(distiller(x)),
        keras.ops.convert_to_numpy(distiller.student(x)),
        rtol=1e-6,
    )


def test_alpha_extremes(toy):
    x, y = toy
    for alpha, key in ((1.0, "student_loss"), (0.0, "distillation_loss")):
        result = make_distiller(alpha=alpha).evaluate(x, y, return_dict=True, verbose=0)
        np.testing.assert_allclose(result["loss"], result[key], rtol=1e-6)


def test_cached_targets_give_same_loss_as_online(toy):
    x, y = toy
    distiller = make_distiller()
    logits = distiller.teacher.predict(x, verbose=0)
    online = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    cached = distiller.evaluate(
        x, {"labels": y, "teacher_logits": logits}, batch_size=16, return_dict=True, verbose=0
    )
    for key in online:
        np.testing.assert_allclose(cached[key], online[key], rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data needs TensorFlow")
def test_tf_data_input(toy):
    import tensorflow as tf

    x, y = toy
    distiller = make_distiller()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = distiller.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["distillation_loss"][0])
    from_ds = distiller.evaluate(ds, return_dict=True, verbose=0)
    from_np = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(from_ds["loss"], from_np["loss"], rtol=1e-5)
    assert distiller.predict(ds, verbose=0).shape == (64, NUM_CLASSES)


# ---------------------------------------------------------------- bad input
def test_keyword_only():
    with pytest.raises(TypeError):
        Distiller(dense_model(1, "t"), dense_model(2, "s"))  # positional: must fail


@pytest.mark.parametrize("bad", [0.0, -2, float("nan"), float("inf"), "hot"])
def test_bad_temperature(bad):
    distiller = Distiller(teacher=dense_model(1, "t"), student=dense_model(2, "s"))
    with pytest.raises(ValueError, match="temperature"):
        distiller.compile(temperature=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5x", True])
def test_bad_alpha(bad):
    distiller = Distiller(teacher=dense_model(1, "t"), student=dense_model(2, "s"))
    with pytest.raises(ValueError, match="alpha"):
        distiller.compile(alpha=bad)


def test_output_shape_mismatch():
    student = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="shape"):
        Distiller(teacher=dense_model(1, "t"), student=student)


@pytest.mark.parametrize(
    "last",
    [
        lambda: [keras.layers.Dense(NUM_CLASSES, activation="softmax")],
        lambda: [keras.layers.Dense(NUM_CLASSES), keras.layers.Softmax()],
        lambda: [keras.layers.Dense(NUM_CLASSES), keras.layers.Activation("softmax")],
    ],
)
def test_softmax_teacher_is_refused(last):
    teacher = keras.Sequential([keras.Input((NUM_FEATURES,)), *last()])
    with pytest.raises(ValueError, match="logits"):
        Distiller(teacher=teacher, student=dense_model(2, "s"))


def test_fit_before_compile(toy):
    x, y = toy
    distiller = Distiller(teacher=dense_model(1, "t"), student=dense_model(2, "s"))
    with pytest.raises(RuntimeError, match="compile"):
        distiller.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        distiller.evaluate(x, y, verbose=0)


def test_string_loss_is_refused():
    distiller = Distiller(teacher=dense_model(1, "t"), student=dense_model(2, "s"))
    with pytest.raises(ValueError, match="from_logits=True"):
        distiller.compile(student_loss_fn="sparse_categorical_crossentropy")


def test_not_a_model():
    with pytest.raises(TypeError, match="keras.Model"):
        Distiller(teacher=lambda x: x, student=dense_model(2, "s"))


def test_student_regulariser_is_added_to_the_loss(toy):
    x, y = toy
    teacher = dense_model(1, "teacher")
    init = keras.initializers.GlorotUniform(seed=2)
    inputs = keras.Input((NUM_FEATURES,))
    l2 = keras.regularizers.L2(0.1)
    outputs = keras.layers.Dense(NUM_CLASSES, kernel_initializer=init, kernel_regularizer=l2)(
        inputs
    )
    student = keras.Model(inputs, outputs)
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(alpha=0.3, temperature=2.0)
    result = distiller.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    w = student.get_weights()[0].astype(np.float64)
    expected = (
        0.3 * np_cross_entropy(y, s).mean()
        + 0.7 * np_distillation(t, s, 2.0).mean()
        + 0.1 * np.sum(w**2)
    )
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


# ---------------------------------------------------------------- saving
def test_distiller_round_trip(tmp_path, toy):
    """Hyperparameters, compile options and the optimizer's state survive save and load:
    one more step from the restored copy lands on the original's weights."""
    x, y = toy
    distiller = make_distiller(
        alpha=0.2, temperature=4.0, optimizer=keras.optimizers.Adam(0.01), steps_per_execution=2
    )
    distiller.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    restored = keras.models.load_model(path)  # no custom_objects needed
    assert isinstance(restored, Distiller)
    assert (restored.alpha, restored.temperature) == (0.2, 4.0)
    assert restored.steps_per_execution == 2
    assert float(restored.optimizer.learning_rate) == pytest.approx(0.01)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        restored.evaluate(x, y, return_dict=True, verbose=0)["loss"],
        distiller.evaluate(x, y, return_dict=True, verbose=0)["loss"],
        rtol=1e-6,
    )
    for model in (distiller, restored):  # Adam's moments and step count were restored
        model.train_on_batch(x, y)
    for a, b in zip(distiller.student.get_weights(), restored.student.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_student_loads_without_kdlib(tmp_path, toy):
    x, y = toy
    distiller = Distiller(
        teacher=models.mlp((8,), input_shape=(NUM_FEATURES,), num_classes=4),
        student=models.mlp((4,), input_shape=(NUM_FEATURES,), num_classes=4),
    )
    distiller.compile(alpha=0.5)
    distiller.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "student.keras"
    distiller.student.save(path)
    with zipfile.ZipFile(path) as zf:
        assert "kdlib" not in zf.read("config.json").decode()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", distiller.student.predict(x, verbose=0))
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"e = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), e, rtol=1e-6)\n"
        "assert not any(k.startswith('kdlib') for k in sys.modules), 'kdlib was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
