"""kdlib.sweep.stacked: the stacked students' loss against numpy, and the equivalence of training
N students stacked with training each alone with kdlib.Distiller (same initial weights, same
batches), for SGD and for Adam."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from reference import np_distillation, np_total_loss

from kdlib import Distiller, models
from kdlib.soft_targets import LABELS_KEY, TEACHER_LOGITS_KEY
from kdlib.sweep.stacked import StackedStudents

HIDDEN = (12, 8)
# (temperature, alpha): pure distillation, a mix, mostly labels, and labels only (scratch).
SETTINGS = [(1.0, 0.0), (4.0, 0.5), (20.0, 0.9), (2.0, 1.0)]
IMAGE = (6, 6)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(96, *IMAGE)).astype("float32")
    y = rng.integers(0, 10, 96).astype("int32")
    logits = (3.0 * rng.normal(size=(96, 10))).astype("float32")
    return x, {LABELS_KEY: y, TEACHER_LOGITS_KEY: logits}


def student(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return models.mlp(hidden=HIDDEN, input_shape=IMAGE, name=f"student_{seed}")


def stack_of(students: list[keras.Model]) -> StackedStudents:
    stack = StackedStudents(
        temperatures=[t for t, _ in SETTINGS],
        alphas=[a for _, a in SETTINGS],
        hidden=HIDDEN,
        input_shape=IMAGE,
    )
    for i, model in enumerate(students):
        stack.set_student_weights(i, model.get_weights())
    return stack


def test_forward_and_loss_match_each_student_and_numpy(data):
    x, targets = data
    students = [student(i) for i in range(len(SETTINGS))]
    stack = stack_of(students)
    logits = keras.ops.convert_to_numpy(stack(x))
    assert logits.shape == (len(x), len(SETTINGS), 10)
    for i, model in enumerate(students):
        np.testing.assert_allclose(logits[:, i], model.predict(x, verbose=0), atol=1e-5)
    losses = keras.ops.convert_to_numpy(
        stack.student_losses(targets[LABELS_KEY], targets[TEACHER_LOGITS_KEY], logits)
    )
    expected = [
        np_total_loss(targets[LABELS_KEY], targets[TEACHER_LOGITS_KEY], logits[:, i], a, t)
        for i, (t, a) in enumerate(SETTINGS)
    ]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    total = stack.compute_loss(x, targets, logits)
    np.testing.assert_allclose(float(total), sum(expected), rtol=1e-5)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.SGD(0.5),
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(0.01, clipvalue=0.05),  # element-wise: per student
    ],
    ids=["sgd", "adam", "adam_clipvalue"],
)
def test_stacked_training_equals_separate_distillers(data, make_optimizer):
    x, targets = data
    rng = np.random.default_rng(1)
    # Two epochs, each in a fixed random order given to both ways of training: same batches.
    orders = [rng.permutation(len(x)) for _ in range(2)]

    def epochs(fit):
        for order in orders:
            batch = {k: v[order] for k, v in targets.items()}
            fit(x[order], batch, batch_size=16, epochs=1, shuffle=False, verbose=0)

    separate = []
    for i, (temperature, alpha) in enumerate(SETTINGS):
        teacher = models.mlp(hidden=(4,), input_shape=IMAGE, name="teacher")  # never runs
        distiller = Distiller(teacher=teacher, student=student(i))
        distiller.compile(optimizer=make_optimizer(), alpha=alpha, temperature=temperature)
        epochs(distiller.fit)
        separate.append(distiller.student.get_weights())

    stack = stack_of([student(i) for i in range(len(SETTINGS))])
    before = [stack.get_student_weights(i) for i in range(len(SETTINGS))]
    stack.compile(optimizer=make_optimizer())
    epochs(stack.fit)
    for i, alone in enumerate(separate):
        stacked = stack.get_student_weights(i)
        moved = max(np.abs(a - b).max() for a, b in zip(alone, before[i]))
        assert moved > 1e-2, "training barely moved the weights; the test would prove nothing"
        for got, want in zip(stacked, alone):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_extract_student_is_a_plain_keras_model(data):
    x, _ = data
    stack = StackedStudents(
        temperatures=[2, 3], alphas=[0.1, 0.2], hidden=HIDDEN, input_shape=IMAGE
    )
    model = stack.extract_student(1)
    assert isinstance(model, keras.Model) and model.count_params() == stack.count_params() // 2
    expected = keras.ops.convert_to_numpy(stack(x))[:, 1]
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_each_student_starts_like_a_dense_layer():
    # Glorot uniform over one student's fan-in and fan-out, not over the stacked shape.
    stack = StackedStudents(temperatures=[1] * 50, alphas=[0] * 50, hidden=(30,))
    kernel = keras.ops.convert_to_numpy(stack.hidden_layers[0].kernel)
    assert kernel.shape == (784, 50, 30)
    limit = np.sqrt(6 / (784 + 30))
    assert kernel.max() <= limit and kernel.min() >= -limit
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.01)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="one temperature and one alpha per student"):
        StackedStudents(temperatures=[1, 2], alphas=[0.1])
    with pytest.raises(ValueError, match="temperature"):
        StackedStudents(temperatures=[0], alphas=[0.1])
    with pytest.raises(ValueError, match="alpha"):
        StackedStudents(temperatures=[2], alphas=[1.5])
    stack = StackedStudents(temperatures=[2], alphas=[0.5], hidden=(4,))
    with pytest.raises(IndexError, match="0..0"):
        stack.get_student_weights(1)
    with pytest.raises(ValueError, match="hidden"):
        stack.set_student_weights(0, models.mlp(hidden=(5,)).get_weights())
    with pytest.raises(ValueError, match="cached soft targets"):
        stack.compute_loss(np.zeros((2, 28, 28)), np.zeros(2), np.zeros((2, 1, 10)))


def test_the_soft_term_is_kdlib_losses_accurate_one_at_high_temperatures(data):
    """The textbook float32 KL is 1 % off at T = 1e3 (kdlib.losses); the stack uses the
    accurate one: T^2 KL against a float64 reference, at T up to 1e4."""
    _, targets = data
    temperatures = [0.01, 1.0, 1e3, 1e4]
    stack = StackedStudents(
        temperatures=temperatures, alphas=[0.0] * 4, hidden=HIDDEN, input_shape=IMAGE
    )
    teacher = targets[TEACHER_LOGITS_KEY]
    rng = np.random.default_rng(1)
    near = teacher[:, None, :] + rng.normal(0, 0.5, (len(teacher), 4, 10)).astype("float32")
    got = keras.ops.convert_to_numpy(stack.student_losses(targets[LABELS_KEY], teacher, near))
    expected = [
        np_distillation(teacher.astype("float64"), near[:, i].astype("float64"), t).mean()
        for i, t in enumerate(temperatures)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("clipping", [{"clipnorm": 1.0}, {"global_clipnorm": 1.0}])
def test_gradient_norm_clipping_is_refused(clipping):
    """Each stacked variable holds every student, so a norm over it (or over all of them)
    mixes the students: with clipnorm student 0's weights differed from separate training
    by 0.024. Element-wise clipping (clipvalue) keeps them apart and is accepted."""
    stack = StackedStudents(temperatures=[2, 4], alphas=[0.5, 0.5], hidden=(4,))
    name = next(iter(clipping))
    with pytest.raises(ValueError, match=name) as info:
        stack.compile(optimizer=keras.optimizers.Adam(1e-3, **clipping))
    assert "clipvalue" in str(info.value)
    stack.compile(optimizer=keras.optimizers.Adam(1e-3, clipvalue=1.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_refuses_non_finite_teacher_logits_before_training(data, bad):
    x, targets = data
    logits = targets[TEACHER_LOGITS_KEY].copy()
    logits[5, 3] = bad
    stack = StackedStudents(temperatures=[2], alphas=[0.5], hidden=(4,), input_shape=IMAGE)
    stack.compile(optimizer="adam")
    before = stack.get_student_weights(0)
    with pytest.raises(ValueError, match="not finite"):
        stack.fit(x, {**targets, TEACHER_LOGITS_KEY: logits}, epochs=1, verbose=0)
    for got, want in zip(stack.get_student_weights(0), before):
        np.testing.assert_array_equal(got, want)


def test_fit_refuses_teacher_logits_with_another_class_count(data):
    x, targets = data
    stack = StackedStudents(temperatures=[2], alphas=[0.5], hidden=(4,), input_shape=IMAGE)
    stack.compile(optimizer="adam")
    five = {**targets, TEACHER_LOGITS_KEY: targets[TEACHER_LOGITS_KEY][:, :5]}
    with pytest.raises(ValueError, match=r"5 classes.*10") as info:
        stack.fit(x, five, epochs=1, verbose=0)
    assert "Dimensions must be equal" not in str(info.value)


# ------------------------------------------------------------- a teacher per student
def per_student_targets(targets, num_students: int) -> dict:
    """Every student its own teacher: (n, students, classes), each column different."""
    rng = np.random.default_rng(3)
    n, k = targets[TEACHER_LOGITS_KEY].shape
    logits = (6.0 * rng.normal(size=(n, num_students, k))).astype("float32")
    return {LABELS_KEY: targets[LABELS_KEY], TEACHER_LOGITS_KEY: logits}


def test_a_teacher_per_student_gives_each_student_its_own_column(data):
    x, shared = data
    targets = per_student_targets(shared, len(SETTINGS))
    labels, teachers = targets[LABELS_KEY], targets[TEACHER_LOGITS_KEY]
    stack = stack_of([student(i) for i in range(len(SETTINGS))])
    logits = keras.ops.convert_to_numpy(stack(x))
    losses = keras.ops.convert_to_numpy(stack.student_losses(labels, teachers, logits))
    expected = [
        np_total_loss(labels, teachers[:, i], logits[:, i], a, t)
        for i, (t, a) in enumerate(SETTINGS)
    ]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    # the check can fail: a distilled student's loss with column 0 instead of its own differs
    wrong = np_total_loss(labels, teachers[:, 0], logits[:, 1], SETTINGS[1][1], SETTINGS[1][0])
    assert abs(wrong - expected[1]) > 0.1
    np.testing.assert_allclose(
        float(stack.compute_loss(x, targets, logits)), sum(expected), rtol=1e-5
    )
    stack.compile(optimizer=keras.optimizers.SGD(0.1))
    history = stack.fit(x, targets, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    ("shape", "fragments"),
    [
        ((96, 3, 10), ["(96, 3, 10)", "(n, 4, classes)", "(n, classes)"]),
        ((96, 4, 5), ["5 classes", "10"]),
    ],
)
def test_per_student_teacher_logits_of_a_wrong_shape_are_refused(data, shape, fragments):
    x, targets = data
    stack = stack_of([student(i) for i in range(len(SETTINGS))])
    stack.compile(optimizer="adam")
    bad = {**targets, TEACHER_LOGITS_KEY: np.zeros(shape, "float32")}
    with pytest.raises(ValueError) as info:
        stack.fit(x, bad, epochs=1, verbose=0)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_non_finite_per_student_teacher_logits_are_refused(data):
    x, targets = data
    per = per_student_targets(targets, len(SETTINGS))
    per[TEACHER_LOGITS_KEY][7, 2, 1] = np.nan
    stack = stack_of([student(i) for i in range(len(SETTINGS))])
    stack.compile(optimizer="adam")
    with pytest.raises(ValueError, match="not finite"):
        stack.fit(x, per, epochs=1, verbose=0)
