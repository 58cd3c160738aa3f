"""kdlib.ensemble: an Ensemble teacher is exact at every temperature, for both means, against
a float64 NumPy reference built from the members' own weights; it saves, reloads, distils
online and cached, and refuses bad members with messages that name the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import small_fast_data
from reference import np_distillation, np_mlp_forward, np_softmax

import kdlib
from kdlib import Distiller, Ensemble, models
from kdlib import experiment as ex
from kdlib.ensemble import combine_logits, mean_logits, mean_probabilities
from kdlib.soft_targets import cache_soft_targets
from kdlib.sweep import grid
from kdlib.sweep.stacked import StackedStudents

INPUT_SHAPE, CLASSES, N, MEMBERS = (6, 6), 10, 64, 3
TEMPERATURES = (1.0, 4.0, 20.0)
#: Last-layer weights are multiplied by this, so that logits span tens of units: a softmax
#: taken at the wrong temperature, or of the wrong mean, is then far from the reference.
LOGIT_SCALE = 12.0


def member(seed: int, hidden: tuple[int, ...] = (16,), name: str | None = None):
    keras.utils.set_random_seed(seed)
    model = models.mlp(hidden=hidden, input_shape=INPUT_SHAPE, name=name or f"member_{seed}")
    weights = model.get_weights()
    weights[-2] = weights[-2] * LOGIT_SCALE
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((N, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, N).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def members():
    return [member(seed) for seed in range(MEMBERS)]


def reference_logits(models_, x) -> np.ndarray:
    """Every member's logits in float64 from its weights: (n, members, classes)."""
    return np.stack([np_mlp_forward(m.get_weights(), x) for m in models_], axis=1)


def reference_mean(z: np.ndarray, temperature: float, mean: str) -> np.ndarray:
    """The ensemble's mean distribution at T, float64: the mean of the members' tempered
    softmaxes (arithmetic), or the softmax of the mean logits (geometric)."""
    if mean == "arithmetic":
        return np_softmax(z, temperature).mean(axis=-2)
    return np_softmax(z.mean(axis=-2), temperature)


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("mean", ["arithmetic", "geometric"])
def test_ensemble_is_exact_at_every_temperature(members, data, mean, temperature):
    x, _ = data
    expected = reference_mean(reference_logits(members, x), temperature, mean)
    ensemble = Ensemble(members, mean=mean)
    ensemble.temperature = temperature
    called = np_softmax(keras.ops.convert_to_numpy(ensemble(x)), temperature)
    np.testing.assert_allclose(called, expected, rtol=1e-4, atol=1e-6)
    predicted = np_softmax(ensemble.predict(x, verbose=0), temperature)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-6)
    soft = ensemble.soft_targets(x, temperature)
    assert soft.dtype == np.float64 and soft.shape == (N, CLASSES)
    np.testing.assert_allclose(soft, expected, rtol=1e-4, atol=1e-6)


def test_the_reference_tells_the_two_means_and_the_temperatures_apart(members, data):
    """The checks above could fail: with these members the arithmetic mean differs from the
    geometric one, and the arithmetic mean at T = 4 is not the softmax at T = 4 of the
    logits that are exact at T = 1 (it is not the softmax of one fixed vector)."""
    x, _ = data
    z = reference_logits(members, x)
    arithmetic, geometric = (reference_mean(z, 4.0, m) for m in ("arithmetic", "geometric"))
    assert np.abs(arithmetic - geometric).max() > 0.05
    ensemble = Ensemble(members, temperature=1.0)
    fixed = keras.ops.convert_to_numpy(ensemble(x))
    assert np.abs(np_softmax(fixed, 4.0) - arithmetic).max() > 0.05


def test_predict_follows_a_changed_temperature(members, data):
    """``predict`` compiles a function once; a new temperature must not reuse the old one."""
    x, _ = data
    z = reference_logits(members, x)
    ensemble = Ensemble(members, temperature=1.0)
    ensemble.predict(x, verbose=0)
    ensemble.temperature = 20.0
    np.testing.assert_allclose(
        np_softmax(ensemble.predict(x, verbose=0), 20.0),
        reference_mean(z, 20.0, "arithmetic"),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("mean", ["arithmetic", "geometric"])
def test_combine_logits_and_mean_probabilities(mean, temperature):
    rng = np.random.default_rng(1)
    z = rng.normal(scale=15.0, size=(20, 4, CLASSES))
    expected = reference_mean(z, temperature, mean)
    combined = keras.ops.convert_to_numpy(
        combine_logits(z.astype("float32"), mean=mean, temperature=temperature)
    )
    assert combined.dtype == np.float32 and combined.shape == (20, CLASSES)
    np.testing.assert_allclose(np_softmax(combined, temperature), expected, atol=1e-5)
    p = mean_probabilities(z, temperature, mean)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-15)
    # any leading axes, e.g. (n, views, members, classes)
    views = z.reshape(5, 4, 4, CLASSES)
    np.testing.assert_allclose(
        mean_probabilities(views, temperature, mean), expected.reshape(5, 4, CLASSES), atol=1e-15
    )


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("mean", ["arithmetic", "geometric"])
def test_mean_logits_softmax_is_the_mean(mean, temperature):
    rng = np.random.default_rng(2)
    z = rng.normal(scale=15.0, size=(20, 4, CLASSES))
    logits = mean_logits(z, temperature, mean)
    assert logits.dtype == np.float64 and logits.shape == (20, CLASSES)
    np.testing.assert_allclose(
        np_softmax(logits, temperature), reference_mean(z, temperature, mean), atol=1e-13
    )


def test_mean_logits_do_not_underflow():
    """Two members, one class 2000 logits below the other: the arithmetic mean at T = 1 is
    (1 - e/2, e/2) with e = exp(-2000), which float64 probabilities round to (1, 0); the
    logit gap is -2000 - ln 2 exactly."""
    z = np.array([[[0.0, -2000.0], [0.0, -2010.0]]])
    logits = mean_logits(z, 1.0)
    gap = logits[0, 1] - logits[0, 0]
    np.testing.assert_allclose(gap, -2000.0 + np.log((1 + np.exp(-10.0)) / 2), rtol=1e-12)


def test_mean_probabilities_refuses_a_shape_without_members():
    for function in (mean_probabilities, mean_logits):
        with pytest.raises(ValueError, match=r"shape \(10,\).*\(n, members, classes\)"):
            function(np.zeros(10), 1.0)


def test_one_member_is_that_member(data):
    x, _ = data
    alone = member(7)
    ensemble = Ensemble([alone])
    for t in (1.0, 4.0):
        np.testing.assert_allclose(
            ensemble.soft_targets(x, t),
            np_softmax(np_mlp_forward(alone.get_weights(), x), t),
            rtol=1e-4,
            atol=1e-6,
        )


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("make_members", "error", "fragments"),
    [
        (lambda: [], ValueError, ["members is empty", "[a, b, c]"]),
        (lambda: member(0), TypeError, ["got Functional", "Ensemble([model_a"]),
        (lambda: (m for m in [member(0)]), TypeError, ["got generator", "Ensemble([model_a"]),
        (lambda: [member(0), "model"], TypeError, ["members[1]", "got str", "keras.Model"]),
        (
            lambda: [
                member(0),
                keras.Sequential(
                    [
                        keras.Input(INPUT_SHAPE),
                        keras.layers.Flatten(),
                        keras.layers.Dense(CLASSES, activation="softmax"),
                    ]
                ),
            ],
            ValueError,
            ["members[1]", "applies softmax", "Dense(10) instead of"],
        ),
        (
            lambda: [
                member(0),
                keras.Sequential(
                    [keras.Input(INPUT_SHAPE), keras.layers.Flatten(), keras.layers.Dense(5)]
                ),
            ],
            ValueError,
            ["(None, 10)", "(None, 5)", "one logit per class"],
        ),
        (
            lambda: [member(0), models.mlp(hidden=(4,), input_shape=(5, 5))],
            ValueError,
            ["(None, 6, 6)", "(None, 5, 5)", "same input"],
        ),
    ],
    ids=["empty", "a-model", "a-generator", "not-a-model", "softmax", "classes", "inputs"],
)
def test_bad_members_are_refused_with_the_fix(make_members, error, fragments):
    with pytest.raises(error) as info:
        Ensemble(make_members())
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_the_same_model_twice_is_refused():
    twice = member(0)
    with pytest.raises(ValueError, match="members 0 and 1 are the same model.*its own seed"):
        Ensemble([twice, twice])


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"mean": "harmonic"}, ["mean must be one of", "'harmonic'", "mean='arithmetic'"]),
        ({"temperature": 0.0}, ["temperature must be", "got 0.0", "temperature=3.0"]),
    ],
)
def test_bad_mean_or_temperature_is_refused(members, kwargs, fragments):
    with pytest.raises(ValueError) as info:
        Ensemble(members, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)
    with pytest.raises(ValueError, match="temperature must be"):
        Ensemble(members).temperature = -1.0


# ------------------------------------------------------------------ with the Distiller
def reference_distillation(members, student, x, temperature, mean):
    """Batch mean of T^2 KL(mean_T || softmax(s / T)), float64, from the weights."""
    p = reference_mean(reference_logits(members, x), temperature, mean)
    s = np_mlp_forward(student.get_weights(), x)
    # np_distillation takes logits: log p is a logit vector whose softmax at T = 1 is p;
    # scaled by T it gives p at temperature T.
    return np_distillation(temperature * np.log(p), s, temperature).mean()


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_distiller_online_and_cached_match_the_reference(members, data, temperature):
    x, y = data
    ensemble = Ensemble(members, mean="arithmetic")
    student = member(10, hidden=(8,), name="student")
    distiller = Distiller(teacher=ensemble, student=student)
    distiller.compile(optimizer="sgd", alpha=0.3, temperature=temperature)
    assert ensemble.temperature == temperature  # tempered by compile
    expected = reference_distillation(members, student, x, temperature, "arithmetic")
    online = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(online["distillation_loss"], expected, rtol=1e-4, atol=1e-6)
    targets = cache_soft_targets(ensemble, x, y, temperature=temperature, verbose=0)
    cached = distiller.evaluate(x, targets, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(cached["distillation_loss"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cached["loss"], online["loss"], rtol=1e-5, atol=1e-6)


def test_a_member_cannot_be_the_student(members):
    """It would be frozen with the teacher, so it would not train."""
    with pytest.raises(ValueError, match="shares"):
        Distiller(teacher=Ensemble(members), student=members[0])


def test_soft_targets_check_the_temperature_before_the_members_run(members, data):
    x, _ = data
    ensemble = Ensemble(members)

    def no_predict(*args, **kwargs):
        raise AssertionError("the members ran before the temperature was checked")

    ensemble.predict_member_logits = no_predict
    with pytest.raises(ValueError, match="temperature must be"):
        ensemble.soft_targets(x, -4.0)


def test_distillation_parts_temper_the_ensemble_at_their_temperature(members, data):
    """With ``distillation_losses`` the soft-target temperature is the part's, not
    compile's (3.0 by default): the arithmetic mean must be exact at the part's."""
    from kdlib.distillation_losses import DecoupledKD, LogitsDistillation

    x, y = data
    ensemble = Ensemble(members)
    student = member(10, hidden=(8,), name="student")
    distiller = Distiller(
        teacher=ensemble,
        student=student,
        distillation_losses=[LogitsDistillation(temperature=20.0)],
    )
    distiller.compile(optimizer="sgd", alpha=0.3)
    assert ensemble.temperature == 20.0
    expected = reference_distillation(members, student, x, 20.0, "arithmetic")
    online = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(online["distillation_loss"], expected, rtol=1e-4, atol=1e-6)
    two = Distiller(
        teacher=Ensemble(members),
        student=member(11, hidden=(8,), name="student"),
        distillation_losses=[LogitsDistillation(temperature=2.0), DecoupledKD(temperature=4.0)],
    )
    with pytest.raises(ValueError, match=r"\[2\.0, 4\.0\].*mean='geometric'"):
        two.compile(optimizer="sgd")


def test_cache_of_an_arithmetic_ensemble_needs_the_temperature(members, data):
    x, y = data
    with pytest.raises(ValueError, match=r"temperature=4\.0"):
        cache_soft_targets(Ensemble(members, name="trio"), x, y)


def test_a_geometric_ensemble_caches_without_a_temperature(members, data):
    """Its logits (the mean logits) are exact at every temperature."""
    x, y = data
    ensemble = Ensemble(members, mean="geometric")
    assert not ensemble.temperature_dependent
    logits = cache_soft_targets(ensemble, x, y, verbose=0)["teacher_logits"]
    z = reference_logits(members, x)
    for t in TEMPERATURES:
        np.testing.assert_allclose(
            np_softmax(logits, t), reference_mean(z, t, "geometric"), rtol=1e-4, atol=1e-6
        )
    student = member(10, hidden=(8,), name="student")
    distiller = Distiller(teacher=ensemble, student=student)
    distiller.compile(optimizer="sgd", alpha=0.3, temperature=4.0)
    online = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    expected = reference_distillation(members, student, x, 4.0, "geometric")
    np.testing.assert_allclose(online["distillation_loss"], expected, rtol=1e-4, atol=1e-6)


def test_distiller_with_an_ensemble_trains_under_jit_compile(members, data):
    """One XLA-compiled step (TensorFlow's jit_compile; JAX always compiles) agrees with the
    reference before the step and changes the student only."""
    x, y = data
    ensemble = Ensemble(members)
    before = [w.copy() for m in members for w in m.get_weights()]
    student = member(10, hidden=(8,), name="student")
    distiller = Distiller(teacher=ensemble, student=student)
    jit = keras.backend.backend() != "torch"  # torch's jit_compile is torch.compile: slow
    distiller.compile(optimizer="sgd", alpha=0.0, temperature=4.0, jit_compile=jit)
    expected = reference_distillation(members, student, x, 4.0, "arithmetic")
    evaluated = distiller.evaluate(x, y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(evaluated["distillation_loss"], expected, rtol=1e-4, atol=1e-6)
    history = distiller.fit(x, y, batch_size=N, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["distillation_loss"][0], expected, rtol=1e-4)
    after = [w for m in members for w in m.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_mixed_precision_members_and_a_float32_mean(data):
    """Under "mixed_float16" members may compute (and output) float16 logits; the mean is
    taken in float32 from them, exactly as the float64 reference takes it from them."""
    x, _ = data
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = []
        for seed in range(MEMBERS):
            keras.utils.set_random_seed(seed)
            half.append(
                keras.Sequential(
                    [
                        keras.Input(INPUT_SHAPE),
                        keras.layers.Flatten(),
                        keras.layers.Dense(16, activation="relu"),
                        keras.layers.Dense(
                            CLASSES, kernel_initializer=keras.initializers.RandomNormal(0, 3.0)
                        ),
                    ]
                )
            )
        ensemble = Ensemble(half, temperature=4.0)
        outputs = ensemble(x)
        member_outputs = [m(x) for m in half]
    finally:
        keras.config.set_dtype_policy(previous)
    assert {keras.backend.standardize_dtype(o.dtype) for o in member_outputs} == {"float16"}
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
    z = np.stack([keras.ops.convert_to_numpy(o).astype(np.float64) for o in member_outputs], 1)
    assert np.abs(z).max() > 10.0  # large enough that a float16 combination would show
    np.testing.assert_allclose(
        np_softmax(keras.ops.convert_to_numpy(outputs), 4.0),
        reference_mean(z, 4.0, "arithmetic"),
        rtol=1e-4,
        atol=1e-6,
    )


# ------------------------------------------------------------------ saving
def test_float32_members_under_a_mixed_policy_see_float32_inputs(members, data):
    """An Ensemble made under "mixed_float16" computes in float32 itself, so float32 members
    are not fed images rounded to float16."""
    x, _ = data
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        outputs = keras.ops.convert_to_numpy(Ensemble(members, temperature=4.0)(x))
    finally:
        keras.config.set_dtype_policy(previous)
    np.testing.assert_allclose(
        np_softmax(outputs, 4.0),
        reference_mean(reference_logits(members, x), 4.0, "arithmetic"),
        rtol=1e-4,
        atol=1e-6,
    )


def test_ensemble_and_its_distiller_reload_after_plain_import_kdlib(members, data, tmp_path):
    """Saved with ``.keras``, reloaded in a new process after ``import kdlib`` only (no
    custom_objects): the same mean, temperature and outputs."""
    x, y = data
    ensemble = Ensemble(members, mean="geometric", temperature=4.0, name="trio")
    ensemble_path = tmp_path / "ensemble.keras"
    ensemble.save(ensemble_path)
    teacher = Ensemble([member(s) for s in range(MEMBERS)], mean="arithmetic")
    distiller = Distiller(teacher=teacher, student=member(10, hidden=(8,), name="student"))
    distiller.compile(optimizer="adam", alpha=0.3, temperature=20.0)
    distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
    distiller_path = tmp_path / "distiller.keras"
    distiller.save(distiller_path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ensemble.npy", ensemble.predict(x, verbose=0))
    np.save(tmp_path / "teacher.npy", teacher.predict(x, verbose=0))
    np.save(tmp_path / "student.npy", distiller.predict(x, verbose=0))
    code = (
        "import os, sys\n"
        "import numpy as np\n"
        "import kdlib\n"
        "import keras\n"
        "d = sys.argv[1]\n"
        "x = np.load(os.path.join(d, 'x.npy'))\n"
        "e = keras.models.load_model(os.path.join(d, 'ensemble.keras'))\n"
        "assert type(e).__name__ == 'Ensemble', e\n"
        "assert (e.mean, e.temperature, e.num_members) == ('geometric', 4.0, 3)\n"
        "np.testing.assert_allclose(e.predict(x, verbose=0),"
        " np.load(os.path.join(d, 'ensemble.npy')), rtol=1e-6, atol=1e-6)\n"
        "m = keras.models.load_model(os.path.join(d, 'distiller.keras'))\n"
        "assert type(m.teacher).__name__ == 'Ensemble' and m.teacher.temperature == 20.0\n"
        "np.testing.assert_allclose(m.teacher.predict(x, verbose=0),"
        " np.load(os.path.join(d, 'teacher.npy')), rtol=1e-6, atol=1e-6)\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0),"
        " np.load(os.path.join(d, 'student.npy')), rtol=1e-6, atol=1e-6)\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)


def test_ensemble_is_public_and_registered():
    assert kdlib.Ensemble is Ensemble and "Ensemble" in kdlib.__all__
    assert keras.saving.get_registered_object("kdlib>Ensemble") is Ensemble


# ------------------------------------------------------------------ the sweep
def test_targets_per_student_are_exact_at_each_students_temperature(members, data):
    x, y = data
    temperatures, alphas = [1.0, 2.0, 20.0, 2.0, 4.0], [1.0, 0.0, 0.5, 0.9, 1.0]
    targets = grid.teacher_targets_per_student(Ensemble(members), x, y, temperatures, alphas)
    logits = targets["teacher_logits"]
    assert logits.dtype == np.float32 and logits.shape == (N, 5, CLASSES)
    assert targets["labels"] is y
    z = reference_logits(members, x)
    for n, (t, a) in enumerate(zip(temperatures, alphas)):
        if a < 1.0:
            np.testing.assert_allclose(
                np_softmax(logits[:, n], t), reference_mean(z, t, "arithmetic"), atol=1e-6
            )
    # scratch students (alpha = 1) share the first distilled column
    np.testing.assert_array_equal(logits[:, 0], logits[:, 1])
    np.testing.assert_array_equal(logits[:, 4], logits[:, 1])
    with pytest.raises(TypeError, match="cache_soft_targets"):
        grid.teacher_targets_per_student(members[0], x, y, [2.0], [0.5])
    with pytest.raises(ValueError, match="temperatures must be"):
        grid.teacher_targets_per_student(Ensemble(members), x, y, [0.0], [0.5])
    with pytest.raises(ValueError, match="one temperature and one alpha per student"):
        grid.teacher_targets_per_student(Ensemble(members), x, y, [2.0, 4.0], [0.5])


def scaled_teacher_mlp(seed: int) -> keras.Model:
    """Hinton's 1200-1200 MLP teacher (recognised by the sweep as "mlp"), untrained, with
    logits of tens of units."""
    keras.utils.set_random_seed(seed)
    model = ex.TEACHERS["mlp"]()
    weights = model.get_weights()
    weights[-2] = weights[-2] * 5 * LOGIT_SCALE  # its untrained logits are small on MNIST
    model.set_weights(weights)
    return model


def test_cli_sweep_loads_a_saved_ensemble_and_caches_each_temperature(tmp_path, monkeypatch):
    """`kdlib sweep --load-teacher ensemble.keras`: every student learns the arithmetic mean
    at its own temperature (the float64 reference on the images it trained on), and the
    teacher is recorded as an ensemble."""
    from kdlib import cli

    small_fast_data(monkeypatch, tmp_path / "data")
    monkeypatch.delenv("KDLIB_FAST", raising=False)
    trio = [scaled_teacher_mlp(seed) for seed in range(MEMBERS)]
    Ensemble(trio).save(tmp_path / "ensemble.keras")
    seen = {}
    original_fit = StackedStudents.fit

    def recording_fit(self, x, y, *args, **kwargs):
        seen.update(x=x, y=y, temperatures=self.temperatures, alphas=self.alphas)
        return original_fit(self, x, y, *args, **kwargs)

    monkeypatch.setattr(StackedStudents, "fit", recording_fit)
    argv = ["sweep", "--fast", "--epochs", "1", "--temperatures", "2", "8", "--alphas", "0"]
    argv += ["0.5", "--seeds", "1", "--hidden", "8", "--load-teacher"]
    argv += [str(tmp_path / "ensemble.keras"), "--json", str(tmp_path / "s.json")]
    assert cli.main(argv) == 0
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["teacher"]["name"] == "ensemble of 3 mlp (arithmetic)"
    assert payload["teacher"]["trained_here"] is False
    logits = seen["y"]["teacher_logits"]
    assert logits.shape == (len(seen["x"]), 5, CLASSES)  # scratch + 2 T x 2 alpha
    z = reference_logits(trio, seen["x"])
    for n, (t, a) in enumerate(zip(seen["temperatures"], seen["alphas"])):
        if a < 1.0:
            np.testing.assert_allclose(
                np_softmax(logits[:, n], t), reference_mean(z, t, "arithmetic"), atol=1e-6
            )
    # one cache would not do: the T = 2 column, softened to T = 8, is not the mean at T = 8
    t2 = seen["temperatures"].index(2.0)
    assert (
        np.abs(np_softmax(logits[:, t2], 8.0) - reference_mean(z, 8.0, "arithmetic")).max() > 0.01
    )


@pytest.mark.parametrize(
    ("mean", "expected"),
    [
        ("arithmetic", "ensemble of 2 mlp, 1 member_5 (arithmetic)"),
        ("geometric", "ensemble of 2 mlp, 1 member_5 (geometric)"),
    ],
)
def test_sweep_names_an_ensemble_teacher(mean, expected):
    mixed = [ex.TEACHERS["mlp"](), ex.TEACHERS["mlp"](), models.mlp(hidden=(4,), name="member_5")]
    assert grid._teacher_name(Ensemble(mixed, mean=mean)) == expected


def test_an_ensemble_on_every_shifted_view(members, data):
    """view_logits of the members, then mean_logits: the cache of every view at T."""
    from kdlib.shifts import shift_images, view_logits, views

    x, _ = data
    table = view_logits(Ensemble(members).predict_member_logits, x, max_shift=1, verbose=False)
    assert table.shape == (N, 9, MEMBERS, CLASSES)
    cache = mean_logits(table, 4.0, "arithmetic")
    for k, shift in enumerate(views(1)):
        expected = reference_mean(
            reference_logits(members, shift_images(x, shift)), 4.0, "arithmetic"
        )
        np.testing.assert_allclose(np_softmax(cache[:, k], 4.0), expected, atol=1e-6)
