"""kdlib.experiment: configuration, twin students, the pipeline end to end on a tiny data set."""

from __future__ import annotations

import dataclasses
import json
import statistics
import zipfile

import keras
import numpy as np
import pytest
from reference import write_learnable_mnist

from kdlib import experiment as ex
from kdlib.experiment import conclusions, training
from kdlib.experiment import config as experiment_config
from kdlib.experiment.report import format_table

TINY = {
    "epochs": 1,
    "teacher_epochs": 1,
    "batch_size": 50,
    "train_size": 400,
    "val_size": 100,
    "test_size": 200,
    "verbose": 0,
}
#: The pipeline run that most tests below share: two seeds (a CI and a t-test exist), and
#: eight epochs with patience 1, so that the stopping rule can end the students' runs.
TINY_RUN = ex.ExperimentConfig(**{**TINY, "seeds": 2, "seed": 7, "epochs": 8, "patience": 1})


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("temperature", 0.0, "temperature"),
        ("temperature", -2.0, "-2.0"),
        ("temperature", float("inf"), "inf"),
        ("alpha", 1.5, "1.5"),
        ("alpha", -0.1, "-0.1"),
        ("teacher", "resnet", "'resnet'"),
        ("student", "transformer", "'transformer'"),
        ("epochs", 0, "epochs"),
        ("seeds", 1.5, "seeds"),
        ("batch_size", True, "batch_size"),
        ("seed", -1, "seed"),
        ("learning_rate", 0.0, "learning_rate"),
        ("verbose", 3, "verbose"),
        ("patience", 0, "patience"),
        ("label_smoothing", 1.0, "label_smoothing"),
        ("label_smoothing", -0.1, "-0.1"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value, fragment):
    with pytest.raises(ValueError, match="must") as info:
        ex.ExperimentConfig(**{field: value})
    assert fragment in str(info.value)


def test_default_config_follows_fast_mode(monkeypatch):
    monkeypatch.setenv("KDLIB_FAST", "1")
    fast = ex.ExperimentConfig.default()
    monkeypatch.setenv("KDLIB_FAST", "0")
    full = ex.ExperimentConfig.default()
    assert (fast.train_size, fast.val_size, fast.test_size) == (5000, 1000, 2000)
    assert (full.train_size, full.val_size, full.test_size) == (None, 5000, None)
    assert fast.epochs < full.epochs and fast.teacher_epochs < full.teacher_epochs
    assert full.seeds >= 5 and fast.seeds >= 2  # >= 2 seeds: a CI and a t-test exist
    assert fast.patience == full.patience  # the stopping rule is the same in both modes
    # Only sizes, epochs and the number of seeds differ between the two modes.
    same = {
        "teacher",
        "student",
        "temperature",
        "alpha",
        "label_smoothing",
        "batch_size",
        "patience",
        "seed",
    }
    assert {k: getattr(fast, k) for k in same} == {k: getattr(full, k) for k in same}


def test_default_config_overrides_and_rejects_unknown_settings(monkeypatch):
    monkeypatch.setenv("KDLIB_FAST", "1")
    config = ex.ExperimentConfig.default(temperature=2.5, epochs=None)
    assert config.temperature == 2.5 and config.epochs == 3  # None keeps the default
    with pytest.raises(TypeError, match="temprature"):
        ex.ExperimentConfig.default(temprature=2.0)


# ----------------------------------------------------------------------------- models
def test_parameter_counts_match_hand_computed_formulas():
    # MLP student 784 -> 50 -> 10: weights plus biases of each Dense layer.
    mlp_student = 784 * 50 + 50 + 50 * 10 + 10
    # CNN teacher: 3x3 convs (1 -> 32, 32 -> 64), two 2x2 pools (28 -> 14 -> 7), Dense 128.
    cnn_teacher = (
        (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (7 * 7 * 64 * 128 + 128) + (128 * 10 + 10)
    )
    mlp_teacher = (784 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 10 + 10)
    cnn_student = (9 * 8 + 8) + (9 * 8 * 16 + 16) + (7 * 7 * 16 * 32 + 32) + (32 * 10 + 10)
    assert ex.STUDENTS["mlp"]().count_params() == mlp_student == 39_760
    assert ex.TEACHERS["cnn"]().count_params() == cnn_teacher == 421_642
    assert ex.TEACHERS["mlp"]().count_params() == mlp_teacher
    assert ex.STUDENTS["cnn"]().count_params() == cnn_student
    for teacher in (cnn_teacher, mlp_teacher):
        for student in (mlp_student, cnn_student):
            assert teacher / student >= 10


def test_compression_ratio_refuses_a_student_that_is_too_large():
    assert training.compression_ratio(ex.TEACHERS["cnn"](), ex.STUDENTS["mlp"]()) == pytest.approx(
        421_642 / 39_760
    )
    with pytest.raises(ValueError, match="10x fewer"):
        training.compression_ratio(ex.STUDENTS["mlp"](), ex.STUDENTS["mlp"]())


def test_twin_students_start_from_identical_weights_and_seeds_differ():
    scratch, distilled = ex.twin_students("mlp", seed=3)
    assert scratch is not distilled
    for a, b in zip(scratch.weights, distilled.weights, strict=True):
        assert a is not b
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    other, _ = ex.twin_students("mlp", seed=4)
    assert not np.array_equal(scratch.get_weights()[0], other.get_weights()[0])
    again, _ = ex.twin_students("mlp", seed=3)
    np.testing.assert_array_equal(scratch.get_weights()[0], again.get_weights()[0])


# ------------------------------------------------------------------------------- data
def test_prepare_data_splits_scales_and_holds_out_validation(tmp_path):
    path = write_learnable_mnist(tmp_path / "mnist.npz")
    config = ex.ExperimentConfig(**TINY)
    splits = ex.prepare_data(config, path)
    assert splits.shapes() == {
        "x_train": (400, 28, 28),
        "y_train": (400,),
        "x_val": (100, 28, 28),
        "y_val": (100,),
        "x_test": (200, 28, 28),
        "y_test": (200,),
    }
    assert splits.x_train.dtype == np.float32 and splits.x_train.max() == 1.0
    assert np.bincount(splits.y_train).tolist() == [40] * 10  # class-balanced subset
    # Validation images are never training images (the bar plus noise makes each unique).
    train_rows = {row.tobytes() for row in splits.x_train}
    assert not any(row.tobytes() in train_rows for row in splits.x_val)
    with pytest.raises(ValueError, match="val_size=700"):
        ex.prepare_data(dataclasses.replace(config, val_size=700), path)


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
    path = write_learnable_mnist(tmp_path_factory.mktemp("data") / "mnist.npz")
    return path, ex.prepare_data(ex.ExperimentConfig(**TINY), path)


@pytest.fixture(scope="module")
def tiny_result(tiny_splits, tmp_path_factory):
    """The whole pipeline, run once for the tests that take it: two seeds, and an epoch
    budget with a patience that the stopping rule can reach (the validation accuracy of
    these tiny students levels off within a few epochs). No test changes it."""
    path, _ = tiny_splits
    student_path = tmp_path_factory.mktemp("out") / "student.keras"
    result = ex.run_experiment(TINY_RUN, save_student=student_path, data_path=path)
    return result, student_path


def test_with_alpha_one_and_no_smoothing_all_three_students_are_equal(tiny_splits, tiny_result):
    """alpha = 1 leaves only the hard-label loss, so distillation is plain training, and
    label smoothing 0 is plain training too (through the one-hot path).

    The three students then end with the same weights only if they started from the same
    weights, saw the batches in the same order and stopped at the same epoch: this checks
    all three promises. (With alpha = 1 the teacher's logits carry no weight: the pipeline's
    trained teacher serves.)
    """
    _, splits = tiny_splits
    result, _ = tiny_result
    config = ex.ExperimentConfig(**{**TINY, "alpha": 1.0, "label_smoothing": 0.0})
    pair = ex.train_students(config, splits, result.artifacts.teacher, seed=5)
    for other in (pair.distilled, pair.smoothed):
        for a, b in zip(pair.scratch.get_weights(), other.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len(pair.histories["scratch"]["loss"]) == config.epochs
    np.testing.assert_allclose(
        pair.histories["scratch"]["loss"],
        pair.histories["distilled"]["student_loss"],
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        pair.histories["scratch"]["loss"], pair.histories["smoothed"]["loss"], rtol=1e-4
    )
    # With soft targets (alpha < 1) or smoothed labels the students do end up different:
    # the pipeline's twins (alpha 0.3, label smoothing 0.1) also started from one set of
    # weights and saw the same batches.
    assert (TINY_RUN.alpha, TINY_RUN.label_smoothing) == (0.3, 0.1)
    scratch = result.artifacts.scratch.get_weights()[0]
    assert not np.allclose(scratch, result.artifacts.distilled.get_weights()[0])
    assert not np.allclose(scratch, result.artifacts.smoothed.get_weights()[0])


def test_each_student_keeps_its_best_validation_epoch(tiny_result):
    """The stopping rule: training ends ``patience`` epochs after the best validation
    accuracy (or at the epoch budget), and the weights of the best epoch are restored."""
    result, _ = tiny_result
    config, splits = result.config, result.artifacts.splits
    assert config.patience < config.epochs  # the rule, not only the budget, can end a run
    models = {"scratch": result.artifacts.scratch, "smoothed": result.artifacts.smoothed}
    models["distilled"] = result.artifacts.distilled
    for name, model in models.items():
        history = result.histories[name]  # the first seed's, like the models
        val = history["val_accuracy"]
        best = int(np.argmax(val)) + 1  # first epoch with the highest validation accuracy
        assert training.best_epoch(history) == best
        assert len(val) == min(config.epochs, best + config.patience), (name, val)
        predicted = np.argmax(model.predict(splits.x_val, verbose=0), axis=-1)
        assert np.mean(predicted == splits.y_val) == pytest.approx(max(val), abs=1e-6), name


def test_report_numbers_agree_with_independent_evaluation(tiny_result):
    result, _ = tiny_result
    splits = result.artifacts.splits
    assert result.num_test == 200
    # The teacher: accuracy and errors from Keras' own evaluate, on the same images.
    teacher = result.artifacts.teacher
    _, keras_accuracy = teacher.evaluate(splits.x_test, splits.y_test, verbose=0)
    assert result.teacher.test_accuracy == pytest.approx(keras_accuracy, abs=1e-6)
    assert result.teacher.test_errors == round((1 - keras_accuracy) * 200)
    assert result.teacher.agreement == 1.0 and result.teacher.test_accuracy_std == 0.0
    for report in result.students():
        assert len(report.test_accuracies) == 2
        assert len(report.best_epochs) == len(report.epochs_run) == 2
        assert all(
            1 <= b <= r <= TINY_RUN.epochs for b, r in zip(report.best_epochs, report.epochs_run)
        )
        assert report.test_accuracy == pytest.approx(np.mean(report.test_accuracies))
        assert report.test_accuracy_std == pytest.approx(np.std(report.test_accuracies, ddof=1))
        per_seed_errors = [round(200 * (1 - a)) for a in report.test_accuracies]
        assert report.test_errors == round(statistics.mean(per_seed_errors))
        assert 0.0 <= report.agreement <= 1.0 and report.ms_per_1000 > 0
        assert report.params == 39_760
    # The first seed's scratch student is the one kept: its accuracy is the first entry.
    scratch = result.artifacts.scratch  # compiled by the pipeline, with "accuracy"
    _, scratch_accuracy = scratch.evaluate(splits.x_test, splits.y_test, verbose=0)
    assert result.scratch.test_accuracies[0] == pytest.approx(scratch_accuracy, abs=1e-6)
    assert set(result.histories) == {"teacher", "scratch", "smoothed", "distilled"}
    assert len(result.histories["distilled"]["val_accuracy"]) <= TINY_RUN.epochs
    assert result.gain == pytest.approx(
        statistics.mean(result.distilled.test_accuracies)
        - statistics.mean(result.scratch.test_accuracies)
    )


def test_sizes_on_disk_count_weights_but_not_optimizer_state(tiny_result):
    result, _ = tiny_result
    for report in (result.teacher, *result.students()):
        weights_bytes = 4 * report.params  # float32
        # The file holds the weights plus a little metadata, never Adam's two extra copies.
        assert weights_bytes < report.size_bytes < 1.5 * weights_bytes + 64_000
    assert result.scratch.size_bytes == pytest.approx(result.distilled.size_bytes, rel=0.05)


def test_json_dict_keeps_the_first_versions_fields_and_adds_the_protocol(tiny_result):
    result, _ = tiny_result
    report = json.loads(json.dumps(result.to_json_dict(), allow_nan=False))

    def entry(model, student):
        numbers = {"params": model.params, "test_accuracy": model.test_accuracy}
        if student:
            numbers["test_accuracy_std"] = model.test_accuracy_std
        return {**numbers, "test_errors": model.test_errors}

    first_version = {
        "teacher": entry(result.teacher, student=False),
        "scratch": entry(result.scratch, student=True),
        "distilled": entry(result.distilled, student=True),
        "temperature": 4.0,
        "alpha": 0.3,
        "seeds": 2,
        "seconds": result.seconds,
    }
    for key, value in first_version.items():
        if isinstance(value, dict):
            assert {k: report[key][k] for k in value} == value, key
        else:
            assert report[key] == value, key
    assert type(report["seeds"]) is int and type(report["teacher"]["test_errors"]) is int
    # The protocol's fields, beside them.
    assert {"params", "test_accuracy", "test_errors"} <= set(report["teacher"])
    student_keys = {
        "params",
        "test_accuracy",
        "test_accuracy_std",
        "test_errors",
        "test_accuracies",
        "test_errors_per_seed",
        "best_epochs",
        "epochs_run",
        "agreement",
        "size_bytes",
        "ms_per_1000",
    }
    for name in ("scratch", "smoothed", "distilled"):
        assert set(report[name]) == student_keys
        assert type(report[name]["test_accuracy_std"]) is float
        assert report[name]["test_accuracy"] == pytest.approx(
            np.mean(report[name]["test_accuracies"])
        )
        assert report[name]["test_errors_per_seed"] == [
            round(200 * (1 - a)) for a in report[name]["test_accuracies"]
        ]
    for name in ("teacher", "scratch", "distilled"):
        assert type(report[name]["params"]) is int
        assert type(report[name]["test_errors"]) is int
        assert type(report[name]["test_accuracy"]) is float
    assert report["teacher"]["best_epoch"] == 1  # TINY trains the teacher for one epoch
    assert type(report["temperature"]) is float and type(report["alpha"]) is float
    assert type(report["seeds"]) is int and report["seeds"] == 2
    assert report["seed_list"] == [7, 8] and report["test_images"] == 200
    assert type(report["seconds"]) is float and report["seconds"] > 0
    assert report["stopping"] == {
        "monitor": "val_accuracy",
        "patience": TINY_RUN.patience,
        "max_epochs": TINY_RUN.epochs,
        "teacher_max_epochs": 1,
        "restore_best_weights": True,
    }
    gain = report["comparisons"]["distilled_vs_scratch"]
    assert gain["a"] == "scratch" and gain["b"] == "distilled"
    assert len(gain["differences"]) == 2 and len(gain["mcnemar_per_seed"]) == 2
    assert {"only_a", "only_b", "statistic", "p_value"} == set(gain["mcnemar_pooled"])
    assert report["conditions"]["cpu_count"] >= 1


def test_paired_statistics_match_an_independent_count(tiny_result):
    result, _ = tiny_result
    y = result.artifacts.splits.y_test
    predictions = result.artifacts.predictions
    assert [len(predictions[n]) for n in ("teacher", *experiment_config.STUDENT_ROLES)] == [
        1,
        2,
        2,
        2,
    ]
    assert set(result.comparisons) == {
        "distilled_vs_scratch",
        "distilled_vs_smoothed",
        "smoothed_vs_scratch",
    }
    for a, b in experiment_config.COMPARISONS:
        c = result.comparisons[f"{b}_vs_{a}"]
        for seed, (pa, pb) in enumerate(zip(predictions[a], predictions[b])):
            assert c.differences[seed] == pytest.approx(np.mean(pb == y) - np.mean(pa == y))
            assert c.mcnemar[seed].only_a == np.sum((pa == y) & (pb != y))
            assert c.mcnemar[seed].only_b == np.sum((pb == y) & (pa != y))
        assert c.mean.mean == pytest.approx(np.mean(c.differences))
        assert c.pooled.only_b == sum(m.only_b for m in c.mcnemar)
    # The reports' per-seed accuracies are the same numbers.
    gain = result.comparisons["distilled_vs_scratch"]
    assert gain.differences == pytest.approx(
        np.subtract(result.distilled.test_accuracies, result.scratch.test_accuracies)
    )


def test_table_has_one_row_per_model_with_its_numbers(tiny_result):
    result, _ = tiny_result
    rows = {line.split()[0]: line for line in format_table(result).splitlines() if line}
    for model in (result.teacher, result.scratch, result.distilled):
        row = rows[model.name]
        assert f"{model.params:,}" in row and f"{100 * model.test_accuracy:.2f}" in row
    assert f"± {100 * result.scratch.test_accuracy_std:.2f}" in rows["scratch"]
    assert f"{100 * result.gain:+.2f} points" in format_table(result)
    assert "smoothed" in rows
    gain = result.comparisons["distilled_vs_scratch"]
    # A CI only where the per-seed differences vary (the tiny students may all tie).
    assert ("95 % CI" in format_table(result)) == (gain.mean.high > gain.mean.low)
    statistics_text = conclusions.format_statistics(result)
    for name in ("distilled_vs_scratch", "smoothed_vs_scratch", "McNemar pooled"):
        assert name in statistics_text
    assert statistics_text.count("t(1)") + statistics_text.count("no CI, no t-test") == 3
    summary = conclusions.summary_markdown(result)
    assert f"{100 * result.distilled.test_accuracy:.2f}" in summary and "Verdict" in summary


def test_first_seeds_students_differ_and_the_distilled_one_is_saved(tiny_result):
    result, student_path = tiny_result
    # With soft targets in the loss (alpha < 1) the twins end up different.
    scratch, distilled = result.artifacts.scratch, result.artifacts.distilled
    assert not np.allclose(scratch.get_weights()[0], distilled.get_weights()[0])
    # The saved file is the distilled student, a plain Keras model (test_distiller loads
    # such a file with kdlib hidden).
    with zipfile.ZipFile(student_path) as zf:
        assert "kdlib" not in zf.read("config.json").decode()
    x = result.artifacts.splits.x_test[:20]
    loaded = keras.models.load_model(student_path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distilled.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_run_experiment_checks_the_student_path_before_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(ex, "prepare_data", no_training)
    with pytest.raises(ValueError, match=r"must end in \.keras"):
        ex.run_experiment(ex.ExperimentConfig(**TINY), save_student=tmp_path / "s.h5")
    with pytest.raises(ValueError, match="does not exist"):
        ex.run_experiment(
            ex.ExperimentConfig(**TINY), save_student=tmp_path / "missing" / "s.keras"
        )
