"""Issue 9, items 5-8 through `kdlib distill`: outputs written atomically and as one set,
colliding paths refused, and every flag that used to fail after training refused before it
(status 2, one line). Training is replaced by a canned result: these tests are about files."""

from __future__ import annotations

import errno
import json
import os
import sys

import keras
import pytest

from kdlib import cli, report
from kdlib import experiment as ex


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


# ------------------------------------------------------------------- item 5: atomic outputs
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


# ------------------------------------------------------------------ item 6: colliding paths
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


# ------------------------------------------------- item 7 (and 8): refused before training
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


@pytest.mark.parametrize("value", ["1e20", "1e-5"])
def test_temperature_outside_the_accurate_range_is_refused(capsys, no_training, value):
    err = fails_before_training(capsys, ["--temperature", value])
    assert "--temperature" in err and "between" in err


def test_checks_happen_before_keras_is_imported():
    """The flag checks above must not need TensorFlow (they run before it is imported)."""
    import subprocess

    code = (
        "import sys\n"
        "from kdlib import cli\n"
        "try:\n"
        "    cli.main(['distill', '--seed', str(2**32)])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 2\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("form", ["dynamic", "float32", "int8"])
def test_litert_quantize_without_export_litert_is_refused(capsys, no_training, form):
    err = fails_before_training(capsys, ["--litert-quantize", form])
    assert "--litert-quantize" in err and "--export-litert" in err


@pytest.mark.parametrize("failure", [RuntimeError("converter crashed"), KeyboardInterrupt()])
def test_nothing_is_reported_written_when_the_litert_export_fails(
    tmp_path, canned, monkeypatch, capsys, failure
):
    """The log used to say "wrote r.json" while the run then failed in --export-litert and
    r.json stayed the previous run's."""
    from kdlib import cli_distill, export

    paths, argv = previous_run(tmp_path)
    monkeypatch.setattr(export, "check_litert_available", lambda: None)

    def failing_export(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cli_distill, "_export_litert", failing_export)
    with pytest.raises(type(failure)):
        cli.main(["distill", *argv, "--export-litert", str(tmp_path / "s.tflite")])
    assert "wrote" not in capsys.readouterr().out
    assert_untouched(paths, tmp_path)
