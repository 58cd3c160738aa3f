"""The `kdlib distill` command: flag checks before training, JSON, plot and saved student."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from kdlib import cli
from kdlib import experiment as ex
from kdlib.experiment import config as experiment_config
from kdlib.experiment import report


def test_model_choices_match_the_experiment():
    assert set(cli.TEACHER_CHOICES) == set(ex.TEACHERS)
    assert set(cli.STUDENT_CHOICES) == set(ex.STUDENTS)
    assert cli.DEFAULT_SEEDS == ex.ExperimentConfig().seeds  # --seed is checked with it


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--temperature", "0"], ["--temperature", "got 0.0", "> 0"]),
        (["--temperature", "-3"], ["--temperature", "got -3.0"]),
        (["--temperature", "nan"], ["--temperature", "got nan"]),
        (["--temperature", "warm"], ["--temperature", "'warm'"]),
        (["--alpha", "1.5"], ["--alpha", "got 1.5", "[0, 1]"]),
        (["--alpha", "-0.1"], ["--alpha", "got -0.1"]),
        (["--teacher", "resnet"], ["--teacher", "'resnet'", "cnn"]),
        (["--student", "vit"], ["--student", "'vit'", "mlp"]),
        (["--epochs", "0"], ["--epochs", "got 0"]),
        (["--seeds", "two"], ["--seeds", "'two'"]),
        (["--seed", "-1"], ["--seed", "got -1"]),
        (["--batch-size", "0"], ["--batch-size", "got 0"]),
        (["--label-smoothing", "1"], ["--label-smoothing", "got 1.0", "[0, 1)"]),
        (["--patience", "0"], ["--patience", "got 0"]),
    ],
)
def test_invalid_flags_exit_nonzero_with_one_clear_line(argv, fragments, capsys, no_training):
    with pytest.raises(SystemExit) as info:
        cli.main(["distill", *argv])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("flag", "name", "fragment"),
    [
        ("--json", "missing_dir/out.json", "does not exist"),
        ("--plot", "missing_dir/out.png", "does not exist"),
        ("--plot", "comparison.jpg", "must end in .png"),
        ("--save-student", "student.h5", "must end in .keras"),
        ("--save-student", ".", "is a folder"),
    ],
)
def test_unwritable_paths_are_rejected_before_training(
    flag, name, fragment, tmp_path, capsys, no_training
):
    path = name if name == "." else str(tmp_path / name)
    with pytest.raises(SystemExit) as info:
        cli.main(["distill", flag, path])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and flag in err


def test_console_module_rejects_a_bad_flag_without_training():
    """The entry point itself (as the `kdlib` console script runs it), in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "kdlib.cli", "distill", "--alpha", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--alpha" in done.stderr
    assert done.stdout == ""


def fake_result(config):
    """A made-up result, so the command's output can be tested without training."""
    import numpy as np

    from kdlib import stats
    from kdlib.experiment.report import ExperimentResult, ModelReport

    def model(name, params, accuracies):
        return ModelReport(
            name=name,
            params=params,
            size_bytes=4 * params,
            test_accuracy=sum(accuracies) / len(accuracies),
            test_accuracy_std=0.01 if len(accuracies) > 1 else 0.0,
            test_errors=round(2000 * (1 - sum(accuracies) / len(accuracies))),
            agreement=0.97,
            ms_per_1000=1.5,
            test_accuracies=tuple(accuracies),
        )

    accuracies = {"scratch": [0.95, 0.96], "smoothed": [0.96, 0.96], "distilled": [0.97, 0.96]}
    # Right on the first round(2000 * accuracy) images: the better model's right images
    # include the worse one's.
    correct = {
        name: [np.arange(2000) < round(2000 * a) for a in values]
        for name, values in accuracies.items()
    }
    return ExperimentResult(
        config=config,
        teacher=model("teacher", 421_642, [0.99]),
        scratch=model("scratch", 39_760, accuracies["scratch"]),
        smoothed=model("smoothed", 39_760, accuracies["smoothed"]),
        distilled=model("distilled", 39_760, accuracies["distilled"]),
        num_test=2000,
        seconds=12.5,
        device="CPU",
        histories={},
        comparisons={
            f"{b}_vs_{a}": stats.compare(a, correct[a], b, correct[b])
            for a, b in (("scratch", "distilled"), ("smoothed", "distilled"))
        },
    )


def test_flags_reach_the_experiment_and_every_output_is_written(tmp_path, monkeypatch, capsys):
    calls = []

    def run_experiment(config, *, save_student=None, data_path=None):
        calls.append((config, save_student, os.environ.get("KDLIB_FAST")))
        Path(save_student).write_bytes(b"model")  # what run_experiment does with the path
        return fake_result(config)

    monkeypatch.setattr(ex, "run_experiment", run_experiment)
    monkeypatch.delenv("KDLIB_FAST", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["distill", "--fast", "--epochs", "1", "--teacher-epochs", "2", "--seeds", "2"]
    argv += ["--seed", "3", "--temperature", "5", "--alpha", "0.2", "--batch-size", "100"]
    argv += ["--teacher", "mlp", "--student", "cnn", "--json", str(out / "r.json")]
    argv += ["--plot", str(out / "c.png"), "--save-student", str(out / "s.keras")]
    argv += ["--label-smoothing", "0.2", "--patience", "2"]
    assert cli.main(argv) == 0

    [(config, save_student, fast)] = calls
    assert fast is None  # --fast reaches the config as an argument, never through os.environ
    # saved to a temporary file next to s.keras, renamed with the other outputs at the end
    assert Path(save_student).parent == out and Path(save_student).suffix == ".keras"
    assert (out / "s.keras").read_bytes() == b"model"
    assert (config.teacher, config.student, config.temperature, config.alpha) == (
        "mlp",
        "cnn",
        5.0,
        0.2,
    )
    assert (config.epochs, config.teacher_epochs, config.seeds, config.seed) == (1, 2, 2, 3)
    assert config.batch_size == 100
    assert (config.label_smoothing, config.patience) == (0.2, 2)
    assert (
        config.train_size == experiment_config.FAST_SETTINGS["train_size"]
    )  # fast sizes, flags on top
    printed = capsys.readouterr().out
    assert "distillation gain: +1.00 points" in printed
    assert "smoothed" in printed and "distilled - smoothed (distilled_vs_smoothed)" in printed
    assert "McNemar pooled over seeds: 0/40" in printed  # seed 0: 40 images, seed 1: none
    written = json.loads((out / "r.json").read_text())
    assert len(written.pop("run_id")) == 32  # one id per run, also in the PNG's metadata
    assert written == fake_result(config).to_json_dict()
    assert (out / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------- outputs written atomically and as one set, bad flags early
def fails_before_training(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["distill", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdlib distill: error:"), err
    return err


def canned_result(config) -> report.ExperimentResult:
    def model_report(name, params):
        return report.ModelReport(
            name=name,
            params=params,
            size_bytes=1000,
            test_accuracy=0.9,
            test_accuracy_std=0.0,
            test_errors=10,
            agreement=0.95,
            ms_per_1000=1.0,
            test_accuracies=(0.9,),
        )

    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return report.ExperimentResult(
        config=config,
        teacher=model_report("teacher", 500),
        scratch=model_report("scratch", 15),
        distilled=model_report("distilled", 15),
        num_test=100,
        seconds=1.0,
        device="CPU",
        histories={},
        artifacts=report.Artifacts(
            teacher=student, scratch=student, distilled=student, splits=None
        ),
    )


@pytest.fixture
def canned(monkeypatch):
    def run(config, *, save_student=None, **kwargs):
        result = canned_result(config)
        if save_student is not None:  # the behaviour of run_experiment: saves in place
            result.artifacts.distilled.save(save_student)
        return result

    monkeypatch.setattr(ex, "run_experiment", run)


def previous_run(folder):
    """The outputs of an earlier, complete run, that a failed run must leave as they were."""
    paths = {"json": folder / "r.json", "plot": folder / "r.png", "student": folder / "s.keras"}
    paths["json"].write_text('{"old": true}\n')
    paths["plot"].write_bytes(b"old png")
    paths["student"].write_bytes(b"old model")
    argv = [
        "--fast",
        "--json",
        str(paths["json"]),
        "--plot",
        str(paths["plot"]),
        "--save-student",
        str(paths["student"]),
    ]
    return paths, argv


def assert_untouched(paths, folder):
    assert paths["json"].read_text() == '{"old": true}\n'
    assert paths["plot"].read_bytes() == b"old png"
    assert paths["student"].read_bytes() == b"old model"
    assert sorted(p.name for p in folder.iterdir()) == ["r.json", "r.png", "s.keras"]


# ------------------------------------------------------------------- atomic outputs
def test_ctrl_c_while_saving_the_student_loses_nothing(tmp_path, canned, monkeypatch):
    paths, argv = previous_run(tmp_path)

    def interrupted_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["distill", *argv])
    assert_untouched(paths, tmp_path)


def test_ctrl_c_between_outputs_never_mixes_two_runs(tmp_path, canned, monkeypatch):
    paths, argv = previous_run(tmp_path)
    import matplotlib.figure

    def interrupted_savefig(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted_savefig)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["distill", *argv])
    assert_untouched(paths, tmp_path)


def test_full_disk_leaves_no_empty_json(tmp_path, canned, monkeypatch):
    paths, argv = previous_run(tmp_path)
    real_dumps = json.dumps

    def disk_full(*args, **kwargs):
        real_dumps(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dumps", disk_full)
    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(OSError, match="No space"):
        cli.main(["distill", *argv])
    assert_untouched(paths, tmp_path)


def test_a_complete_run_writes_all_outputs_with_one_run_id(tmp_path, canned):
    paths, argv = previous_run(tmp_path)
    assert cli.main(["distill", *argv]) == 0
    result = json.loads(paths["json"].read_text())
    assert len(result["run_id"]) >= 16
    from PIL import Image

    with Image.open(paths["plot"]) as png:
        assert png.info["kdlib run_id"] == result["run_id"]
    model = keras.models.load_model(paths["student"])
    assert model.output_shape == (None, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.png", "s.keras"]


# ------------------------------------------------------------------ colliding paths
@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "same.keras", "--save-student", "same.keras"],
        ["--json", "out.png", "--plot", "./out.png"],
        ["--plot", "a/../x.png", "--json", "x.png"],
    ],
)
def test_colliding_output_paths_are_refused(tmp_path, monkeypatch, capsys, no_training, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    err = fails_before_training(capsys, argv)
    assert "same file" in err


# ------------------------------------------------- refused before training
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_unwritable_folder_that_access_calls_writable(capsys, no_training):
    err = fails_before_training(capsys, ["--json", "/proc/results.json"])
    assert "--json" in err and "cannot be written" in err


def test_upper_case_keras_suffix_is_refused(tmp_path, capsys, no_training):
    err = fails_before_training(capsys, ["--save-student", str(tmp_path / "s.KERAS")])
    assert ".keras" in err


@pytest.mark.parametrize(
    "argv", [["--seed", str(2**32)], ["--seed", str(2**32 - 1), "--seeds", "2"]]
)
def test_seeds_beyond_numpy_range_are_refused(capsys, no_training, argv):
    err = fails_before_training(capsys, argv)
    assert "4294967295" in err
