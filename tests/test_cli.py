"""The `kdlib distill` command: flag checks before training, JSON, plot and saved student."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import pytest
from reference import write_learnable_mnist

from kdlib import cli
from kdlib import experiment as ex


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the command gets as far as training."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started although a flag was invalid")

    monkeypatch.setattr(ex, "run_experiment", refuse)
    monkeypatch.setattr(ex, "prepare_data", refuse)


def test_model_choices_match_the_experiment():
    assert set(cli.TEACHER_CHOICES) == set(ex.TEACHERS)
    assert set(cli.STUDENT_CHOICES) == set(ex.STUDENTS)


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


def test_fast_distill_writes_json_plot_and_a_plain_keras_student(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # Fast mode needs 5,000 training + 1,000 validation and 2,000 test images.
    write_learnable_mnist(data_dir / "mnist.npz", n_train=6500, n_test=2000)
    monkeypatch.setenv("KDLIB_DATA_DIR", str(data_dir))
    monkeypatch.delenv("KDLIB_FAST", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    status = cli.main(
        [
            "distill",
            "--fast",
            "--epochs",
            "1",
            "--teacher-epochs",
            "1",
            "--seeds",
            "2",
            "--seed",
            "3",
            "--temperature",
            "5",
            "--alpha",
            "0.2",
            "--batch-size",
            "100",
            "--json",
            str(out / "r.json"),
            "--plot",
            str(out / "c.png"),
            "--save-student",
            str(out / "s.keras"),
        ]
    )
    assert status == 0
    assert "KDLIB_FAST" not in os.environ  # --fast does not leak out of the command

    printed = capsys.readouterr().out
    for word in ("teacher", "scratch", "distilled", "test accuracy"):
        assert word in printed
    report = json.loads((out / "r.json").read_text())
    assert report["temperature"] == 5.0 and report["alpha"] == 0.2 and report["seeds"] == 2
    assert report["teacher"]["params"] == 421_642
    assert report["scratch"]["params"] == report["distilled"]["params"] == 39_760
    for name in ("scratch", "distilled"):
        errors = report[name]["test_errors"]
        # test_errors is the mean over seeds rounded: within 1 of 2,000 * (1 - accuracy).
        assert abs(errors - 2000 * (1 - report[name]["test_accuracy"])) <= 1
    assert (out / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    student = keras.models.load_model(out / "s.keras")
    assert student.count_params() == 39_760
    assert tuple(student.output.shape) == (None, 10)
