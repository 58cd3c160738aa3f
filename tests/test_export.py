"""kdlib.export: LiteRT files that compute what the Keras model computes, and clear errors.

References are independent of the code under test: a float64 numpy forward pass of the MLP
(float32 and dynamic files), the Keras model's predictions on MNIST (int8 agreement), and
the analytic int8 input quantisation of [0, 1] images (scale 1/255, zero point -128).
"""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
from reference import np_mlp_forward, write_learnable_mnist

from kdlib import cli, data, export, models
from kdlib.distiller import Distiller

#: Float32 file vs float64 numpy: the same float32 arithmetic in another order.
FLOAT32_ATOL = 1e-4
#: Full-integer int8 student vs its Keras self on MNIST test images: same class on at least
#: this fraction, accuracy at most this many points lower.
INT8_MIN_AGREEMENT = 0.98
INT8_MAX_DROP_POINTS = 1.0


def _numpy_mlp(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's logits from tests/reference.py's float64 numpy forward pass."""
    return np_mlp_forward(model.get_weights(), x)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """2,000 training and 1,000 test images scaled to [0, 1]: the real MNIST when a local
    copy exists (CI has one), else the learnable MNIST-shaped set of tests/reference.py."""
    local = [p for p in data.candidate_paths() if p.is_file()]
    if local:
        path = local[0]
    else:
        path = write_learnable_mnist(tmp_path_factory.mktemp("data") / "mnist.npz", 2000, 1000)
    (x_train, y_train), (x_test, y_test) = data.load_mnist(path)
    x_train, y_train = data.balanced_subset(x_train, y_train, 2000, seed=0)
    x_test, y_test = data.balanced_subset(x_test, y_test, 1000, seed=0)
    return (
        data.scale_images(x_train),
        y_train.astype("int32"),
        data.scale_images(x_test),
        y_test.astype("int32"),
    )


@pytest.fixture(scope="module")
def student(mnist):
    """A 32-unit MLP trained for 3 epochs on 2,000 images (a few seconds)."""
    x_train, y_train, _, _ = mnist
    keras.utils.set_random_seed(0)
    model = models.mlp(hidden=(32,), name="tiny_student")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def files(student, mnist, tmp_path_factory):
    """The student converted in the three forms."""
    folder = tmp_path_factory.mktemp("litert")
    x_train = mnist[0]
    return {
        "float32": export.to_litert(student, folder / "float32.tflite"),
        "dynamic": export.to_litert(student, folder / "dynamic.tflite", quantize="dynamic"),
        "int8": export.to_litert(
            student, folder / "int8.tflite", quantize="int8", representative_data=x_train[:300]
        ),
    }


def test_float32_file_gives_the_numpy_logits(student, files, mnist):
    x_test = mnist[2]
    litert = export.LiteRTModel(files["float32"])
    assert litert.input_dtype == np.float32
    logits = litert.predict(x_test, batch_size=300)  # 1,000 = 3 x 300 + 100: a resize too
    np.testing.assert_allclose(logits, _numpy_mlp(student, x_test), atol=FLOAT32_ATOL, rtol=0)


def test_evaluate_litert_counts_errors_like_numpy(student, files, mnist):
    _, _, x_test, y_test = mnist
    expected = np.argmax(_numpy_mlp(student, x_test), axis=-1)
    scores = export.evaluate_litert(files["float32"], x_test, y_test)
    assert scores["errors"] == int(np.sum(expected != y_test))
    assert scores["accuracy"] == pytest.approx(np.mean(expected == y_test))
    assert scores["num_images"] == 1000
    np.testing.assert_array_equal(scores["predictions"], expected)
    assert isinstance(scores["accuracy"], float) and isinstance(scores["errors"], int)


def test_int8_file_is_full_integer_with_the_analytic_input_quantisation(files):
    litert = export.LiteRTModel(files["int8"])
    assert litert.input_dtype == np.int8
    assert np.dtype(litert.output_details["dtype"]) == np.int8
    # Calibrated on images in [0, 1]: x = s (q - z) maps q = -128..127 onto 0..1.
    scale, zero_point = litert.input_details["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3)
    assert zero_point == -128


def test_int8_agrees_with_the_keras_model_on_mnist(student, files, mnist):
    _, _, x_test, y_test = mnist
    keras_classes = np.argmax(student.predict(x_test, verbose=0), axis=-1)
    scores = export.evaluate_litert(files["int8"], x_test, y_test)
    agreement = np.mean(scores["predictions"] == keras_classes)
    assert agreement >= INT8_MIN_AGREEMENT, agreement
    keras_accuracy = np.mean(keras_classes == y_test)
    assert 100 * (keras_accuracy - scores["accuracy"]) <= INT8_MAX_DROP_POINTS
    # The dequantised logits stay within a few output steps of the float logits.
    litert = export.LiteRTModel(files["int8"])
    out_scale = litert.output_details["quantization"][0]
    error = np.abs(litert.predict(x_test) - _numpy_mlp(student, x_test))
    assert np.median(error) <= 3 * out_scale, (np.median(error), out_scale)


def test_dynamic_file_is_smaller_and_close(student, files, mnist):
    x_test = mnist[2]
    assert files["dynamic"].stat().st_size * 3 < files["float32"].stat().st_size
    assert files["int8"].stat().st_size * 3 < files["float32"].stat().st_size
    logits = export.LiteRTModel(files["dynamic"]).predict(x_test)
    reference = _numpy_mlp(student, x_test)
    assert export.LiteRTModel(files["dynamic"]).input_dtype == np.float32
    assert np.mean(np.argmax(logits, -1) == np.argmax(reference, -1)) >= 0.99
    assert np.max(np.abs(logits - reference)) < 0.05 * np.ptp(reference)


# ---------------------------------------------------------------------- bad arguments
@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if to_litert gets as far as converting."""

    def refuse(*args, **kwargs):
        raise AssertionError("conversion started although an argument was invalid")

    monkeypatch.setattr(keras.Model, "export", refuse)


def _softmax_model() -> keras.Model:
    inputs = keras.Input((28, 28))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"quantize": "float16"}, ValueError, "quantize must be one of"),
        ({"quantize": True}, ValueError, "quantize must be one of"),
        ({"quantize": "int8"}, ValueError, "needs representative_data"),
        ({"quantize": "dynamic", "representative_data": "x"}, ValueError, "only with"),
        (
            {"quantize": "int8", "representative_data": np.zeros((5, 28))},
            ValueError,
            "(n, 28, 28)",
        ),
        ({"quantize": "int8", "representative_data": np.zeros((0, 28, 28))}, ValueError, "n >= 1"),
        (
            {"quantize": "int8", "representative_data": np.full((2, 28, 28), np.nan)},
            ValueError,
            "NaN",
        ),
        ({"path": "model.tfl"}, ValueError, "must end in .tflite"),
        ({"path": "missing/model.tflite"}, ValueError, "does not exist"),
        ({"path": "."}, ValueError, "is a folder"),
        ({"model": "softmax"}, ValueError, "applies softmax"),
        ({"model": "distiller"}, TypeError, "distiller.student"),
        ({"model": "not a model"}, TypeError, "must be a keras.Model"),
    ],
)
def test_bad_arguments_fail_before_conversion_and_write_nothing(
    kwargs, error, fragment, tmp_path, monkeypatch, no_conversion
):
    monkeypatch.chdir(tmp_path)
    model = models.mlp(hidden=(4,))
    chosen = {
        "softmax": _softmax_model(),
        "distiller": Distiller(teacher=models.mlp(hidden=(8,)), student=model),
        None: model,
    }.get(kwargs.get("model"), kwargs.get("model", model))
    args = {k: v for k, v in kwargs.items() if k not in ("model", "path")}
    with pytest.raises(error) as info:
        export.to_litert(chosen, kwargs.get("path", "model.tflite"), **args)
    assert fragment in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "student.tflite"
    target.write_bytes(b"the previous good file")

    def half_written(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"TFL3 half")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", half_written)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export.to_litert(models.mlp(hidden=(4,)), target)
    assert [p.name for p in tmp_path.iterdir()] == ["student.tflite"]
    assert target.read_bytes() == b"the previous good file"


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing", "not an existing .tflite file"),
        ("garbage", "not a valid LiteRT model"),
        ("wrong_suffix", "not an existing .tflite file"),
    ],
)
def test_evaluate_litert_rejects_bad_files(setup, fragment, tmp_path):
    path = tmp_path / ("m.keras" if setup == "wrong_suffix" else "m.tflite")
    if setup != "missing":
        path.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError) as info:
        export.evaluate_litert(path, np.zeros((2, 28, 28)), np.zeros(2, int))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("x", "y", "fragment"),
    [
        (np.zeros((3, 28, 27)), np.zeros(3, int), "(n, 28, 28)"),
        (np.zeros((3, 28, 28)), np.zeros(2, int), "one integer label per image"),
        (np.zeros((3, 28, 28)), np.zeros(3), "one integer label per image"),
    ],
)
def test_evaluate_litert_rejects_bad_data(files, x, y, fragment):
    with pytest.raises(ValueError) as info:
        export.evaluate_litert(files["float32"], x, y)
    assert fragment in str(info.value)


# ------------------------------------------------------------------- kdlib distill flag
@pytest.mark.parametrize(
    ("name", "fragment"), [("s.tfl", "must end in .tflite"), ("no/s.tflite", "does not exist")]
)
def test_cli_rejects_a_bad_export_path_before_training(
    name, fragment, tmp_path, monkeypatch, capsys
):
    from kdlib import experiment

    def refuse(*args, **kwargs):
        raise AssertionError("training started although --export-litert was invalid")

    monkeypatch.setattr(experiment, "run_experiment", refuse)
    with pytest.raises(SystemExit) as info:
        cli.main(["distill", "--export-litert", str(tmp_path / name)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--export-litert" in err and fragment in err


def test_cli_export_writes_an_int8_student_and_reports_it(student, mnist, tmp_path, capsys):
    x_train, y_train, x_test, y_test = mnist
    splits = types.SimpleNamespace(x_train=x_train, x_test=x_test, y_test=y_test)
    result = types.SimpleNamespace(
        artifacts=types.SimpleNamespace(distilled=student, splits=splits)
    )
    path = tmp_path / "student.tflite"
    cli._export_litert(result, str(path), "int8")
    assert export.LiteRTModel(path).input_dtype == np.int8
    scores = export.evaluate_litert(path, x_test, y_test)
    printed = capsys.readouterr().out
    assert (
        f"{100 * scores['accuracy']:.2f} %" in printed and f"{scores['errors']} errors" in printed
    )


def test_an_old_keras_or_a_missing_interpreter_is_explained(tmp_path, monkeypatch, no_conversion):
    monkeypatch.setattr(export.keras, "version", lambda: "3.12.1")
    with pytest.raises(RuntimeError, match=r"Keras >= 3\.13.*3\.12\.1.*pip install -U keras"):
        export.to_litert(models.mlp(hidden=(4,)), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    real_find_spec = export.importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ai_edge_litert" else real_find_spec(name, *a),
    )
    with pytest.raises(ImportError, match="pip install ai-edge-litert"):
        export.check_litert_available()


def test_the_written_file_has_the_umask_permissions(files):
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert files["float32"].stat().st_mode & 0o777 == 0o666 & ~umask
