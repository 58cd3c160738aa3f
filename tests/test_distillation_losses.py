"""kdlib.distillation_losses: the parts of a Distiller, trained through fit(), against numpy
references, with early errors and saving. Backend-agnostic."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from reference import np_cross_entropy, np_distillation

from kdlib import Distiller, losses
from kdlib.distillation_losses import (
    AttentionTransfer,
    DecoupledKD,
    FeatureDistillation,
    LogitsDistillation,
    RelationalDistillation,
)

N, SIDE, CLASSES = 32, 8, 10


def cnn(seed: int, prefix: str, channels: int, sequential: bool = False) -> keras.Model:
    """conv (8 x 8) -> pool -> conv (4 x 4) -> global pool -> "emb" -> logits."""
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = [
        keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                            kernel_initializer=init, name=f"{prefix}_conv1"),
        keras.layers.MaxPooling2D(2, name=f"{prefix}_pool"),
        keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                            kernel_initializer=init, name=f"{prefix}_conv2"),
        keras.layers.GlobalAveragePooling2D(name=f"{prefix}_emb"),
        keras.layers.Dense(CLASSES, kernel_initializer=init, name=f"{prefix}_logits"),
    ]  # fmt: skip
    if sequential:
        return keras.Sequential([keras.Input((SIDE, SIDE, 1)), *layers], name=prefix)
    x = inputs = keras.Input((SIDE, SIDE, 1))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=prefix)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((N, SIDE, SIDE, 1), dtype=np.float32), rng.integers(0, CLASSES, N)


def parts_for_fit() -> list:
    return [
        LogitsDistillation(temperature=4.0),
        FeatureDistillation(teacher_layer="t_conv2", student_layer="s_conv2"),
        FeatureDistillation(teacher_layer="t_emb", student_layer="s_emb", loss="cosine"),
        AttentionTransfer(layer_pairs=[("t_conv1", "s_conv1"), ("t_conv2", "s_conv2")]),
        RelationalDistillation(distance_weight=1.0, angle_weight=2.0, teacher_layer="t_emb",
                               student_layer="s_emb"),
        DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(6))
def test_each_part_trains_through_fit(data, index):
    x, y = data
    part = parts_for_fit()[index]
    student = cnn(2, "s", 4, sequential=index % 2 == 0)
    distiller = Distiller(teacher=cnn(1, "t", 8), student=student, distillation_losses=[part])
    distiller.compile(optimizer=keras.optimizers.SGD(0.05), alpha=0.5)
    before = [w.copy() for w in student.get_weights()]
    history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
    values = history.history["distillation_loss"]
    assert all(np.isfinite(values)) and values[0] > 0
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))


def test_one_logits_part_is_the_compile_default(data):
    """Distiller(distillation_losses=[LogitsDistillation(T)]) == compile(alpha, T)."""
    x, y = data
    teacher, student = cnn(1, "t", 8), cnn(2, "s", 4)
    plain = Distiller(teacher=teacher, student=student)
    plain.compile(alpha=0.3, temperature=2.5)
    parts = Distiller(
        teacher=teacher, student=student, distillation_losses=[LogitsDistillation(2.5)]
    )
    parts.compile(alpha=0.3)
    t = np.asarray(teacher.predict(x, verbose=0), np.float64)
    s = np.asarray(student.predict(x, verbose=0), np.float64)
    ce, kd = np_cross_entropy(y, s).mean(), np_distillation(t, s, 2.5).mean()
    for distiller in (plain, parts):
        result = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
        np.testing.assert_allclose(result["distillation_loss"], kd, rtol=1e-4)
        np.testing.assert_allclose(result["loss"], 0.3 * ce + 0.7 * kd, rtol=1e-4)


def test_weighted_sum_of_parts_matches_numpy(data):
    """alpha CE + (1 - alpha) (w1 KD + w2 AT + w3 hint-MSE), each from its reference."""
    x, y = data
    teacher, student = cnn(1, "t", 8), cnn(2, "s", 8)  # same channels: no projector
    distiller = Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=[
            LogitsDistillation(3.0),
            AttentionTransfer([("t_conv1", "s_conv1")]),
            FeatureDistillation("t_conv2", "s_conv2"),
        ],
        distillation_loss_weights=[0.5, 100.0, 2.0],
    )
    distiller.compile(alpha=0.2)
    result = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)

    def features(model, name):
        out = keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)
        return np.asarray(out, np.float64)

    t, s = (np.asarray(m.predict(x, verbose=0), np.float64) for m in (teacher, student))
    a_t, a_s = features(teacher, "t_conv1"), features(student, "s_conv1")

    def att(a):
        q = (a**2).sum(-1).reshape(N, -1)
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    at = ((att(a_s) - att(a_t)) ** 2).mean()
    mse = ((features(teacher, "t_conv2") - features(student, "s_conv2")) ** 2).mean()
    kd = np_distillation(t, s, 3.0).mean()
    distill = 0.5 * kd + 100.0 * at + 2.0 * mse
    np.testing.assert_allclose(result["distillation_loss"], distill, rtol=1e-4)
    ce = np_cross_entropy(y, s).mean()
    np.testing.assert_allclose(result["loss"], 0.2 * ce + 0.8 * distill, rtol=1e-4)


def test_decoupled_part_matches_the_pure_loss(data):
    x, y = data
    teacher, student = cnn(1, "t", 8), cnn(2, "s", 4)
    distiller = Distiller(
        teacher=teacher, student=student, distillation_losses=[DecoupledKD(1.0, 2.0, 3.0)]
    )
    distiller.compile(alpha=0.0)
    result = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    expected = np.mean(keras.ops.convert_to_numpy(losses.dkd_loss(t, s, y, 1.0, 2.0, 3.0)))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-4)


def test_unknown_layer_is_named_before_training():
    with pytest.raises(ValueError, match=r"student has no layer named 's_conv9'.*s_conv1"):
        Distiller(
            teacher=cnn(1, "t", 8),
            student=cnn(2, "s", 4),
            distillation_losses=[FeatureDistillation("t_conv2", "s_conv9")],
        )


def test_unmatched_shapes_are_named_before_training():
    with pytest.raises(ValueError, match=r"'t_conv1' gives \(None, 8, 8, 8\).*'s_conv2'"):
        Distiller(
            teacher=cnn(1, "t", 8),
            student=cnn(2, "s", 4),
            distillation_losses=[AttentionTransfer([("t_conv1", "s_conv2")])],
        )
    with pytest.raises(ValueError, match="cannot match"):
        Distiller(
            teacher=cnn(1, "t", 8),
            student=cnn(2, "s", 4),
            distillation_losses=[FeatureDistillation("t_conv1", "s_conv2")],
        )
    with pytest.raises(ValueError, match="one number >= 0 per part"):
        Distiller(
            teacher=cnn(1, "t", 8),
            student=cnn(2, "s", 4),
            distillation_losses=[LogitsDistillation()],
            distillation_loss_weights=[1.0, 2.0],
        )


def test_projector_trains_and_distiller_reloads(data, tmp_path):
    x, y = data
    part = FeatureDistillation("t_conv2", "s_conv2")  # 4 -> 8 channels: a 1x1 conv
    distiller = Distiller(
        teacher=cnn(1, "t", 8),
        student=cnn(2, "s", 4),
        distillation_losses=[part, RelationalDistillation()],
        distillation_loss_weights=[1.0, 0.5],
    )
    distiller.compile(optimizer="adam", alpha=0.5)
    projector_before = [w.copy() for w in part.projector.get_weights()]
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert any(
        not np.allclose(a, b) for a, b in zip(projector_before, part.projector.get_weights())
    )
    before = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(p).__name__ for p in loaded.distillation_losses] == [
        "FeatureDistillation",
        "RelationalDistillation",
    ]
    after = loaded.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(after["loss"], before["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        loaded.distillation_losses[0].projector.get_weights()[0], part.projector.get_weights()[0]
    )


# ------------------------------------------- kdlib and keras.distillation vs one reference
def logits_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(0, 4, (16, 10)).astype("float32"), rng.normal(0, 4, (16, 10)).astype(
        "float32"
    )


def test_kdlib_logits_distillation_matches_hinton_reference():
    t, s = logits_batch()
    reference = np_distillation(t, s, 3.0).mean()  # T^2 KL(softmax(t/T) || softmax(s/T))
    part = LogitsDistillation(temperature=3.0)
    value = np.mean(keras.ops.convert_to_numpy(part.compute({None: t}, {None: s}, None)))
    np.testing.assert_allclose(value, reference, rtol=1e-5)


def test_keras_distillation_logits_loss_against_the_same_reference():
    """keras.distillation (Keras >= 3.12): right with a KLDivergence instance; its default
    loss string skips the softmax and T^2, and is a different number."""
    kd = pytest.importorskip("keras.distillation")
    t, s = logits_batch()
    reference = np_distillation(t, s, 3.0).mean()
    with_instance = kd.LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
    value = float(keras.ops.convert_to_numpy(with_instance.compute_loss(t, s)))
    np.testing.assert_allclose(value, reference, rtol=1e-4)
    default = float(keras.ops.convert_to_numpy(kd.LogitsDistillation(3.0).compute_loss(t, s)))
    # what the default computes: keras.losses.kl_divergence on the scaled logits themselves,
    # clipped to [1e-7, 1], no softmax and no T^2
    a, b = (np.clip(np.asarray(v, np.float64) / 3.0, 1e-7, 1.0) for v in (t, s))
    no_softmax = np.mean(np.sum(a * np.log(a / b), axis=-1))
    np.testing.assert_allclose(default, no_softmax, rtol=1e-4)
    assert abs(default - reference) > 0.5 * reference
