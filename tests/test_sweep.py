"""kdlib.sweep and `kdlib sweep`: the grid's records, selection on validation, the JSON,
the heatmap, and flag checks before any training."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import small_fast_data
from reference import write_learnable_mnist

from kdlib import cli, sweep
from kdlib import experiment as ex
from kdlib.sweep.plots import grid_array, plot_sweep_heatmap

TINY = {
    "epochs": 2,
    "teacher_epochs": 1,
    "teacher": "mlp",
    "batch_size": 50,
    "train_size": 400,
    "val_size": 100,
    "test_size": 200,
    "verbose": 0,
    "seeds": 2,
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = write_learnable_mnist(tmp_path_factory.mktemp("data") / "mnist.npz")
    config = sweep.SweepConfig(
        temperatures=(2.0, 8.0),
        alphas=(0.0, 0.5),
        hidden=(16,),
        experiment=ex.ExperimentConfig(**TINY),
    )
    return sweep.run_sweep(config, data_path=path)


def test_one_record_per_cell_and_seed_and_a_scratch_baseline_per_seed(result):
    payload = json.loads(json.dumps(result.to_json_dict()))  # JSON-serialisable as it is
    cells = {(r["temperature"], r["alpha"], r["seed"]) for r in payload["records"]}
    assert cells == {(t, a, s) for t in (2.0, 8.0) for a in (0.0, 0.5) for s in (0, 1)}
    assert [s["seed"] for s in payload["scratch"]] == [0, 1]
    assert payload["students"] == 10 and payload["epochs"] == 2
    for row in payload["records"] + payload["scratch"]:
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["test_accuracy"] <= 1
        assert row["test_errors"] == round(200 * (1 - row["test_accuracy"]))
    assert set(payload["seconds"]) == {"teacher_and_data", "students", "total"}


def test_accuracies_are_those_of_each_student_on_its_own(result):
    """Every record is the student at its index in the stack, measured independently."""
    splits = result.splits
    scratch_and_records = result.scratch + result.records
    for index, row in enumerate(scratch_and_records):
        student = result.stack.extract_student(index)
        predicted = np.argmax(student.predict(splits.x_val, verbose=0), axis=-1)
        assert row["val_accuracy"] == pytest.approx(np.mean(predicted == splits.y_val))
        expected_alpha = 1.0 if index < 2 else row["alpha"]
        assert result.stack.alphas[index] == expected_alpha


def test_selection_uses_validation_means_only(result):
    payload = result.to_json_dict()
    means = {}
    for row in payload["records"]:
        means.setdefault((row["temperature"], row["alpha"]), []).append(row["val_accuracy"])
    best = max(np.mean(v) for v in means.values())
    selected = payload["selected"]
    assert np.mean(means[(selected["temperature"], selected["alpha"])]) == best
    chosen = [
        r["test_accuracy"]
        for r in payload["records"]
        if (r["temperature"], r["alpha"]) == (selected["temperature"], selected["alpha"])
    ]
    assert selected["mean"] == pytest.approx(np.mean(chosen))
    assert selected["std"] == pytest.approx(np.std(chosen, ddof=1))
    gains = np.array(chosen) - [s["test_accuracy"] for s in payload["scratch"]]
    assert selected["gain_over_scratch"]["mean"] == pytest.approx(gains.mean())


def test_heatmap_shows_the_grid_means(result):
    payload = result.to_json_dict()
    table = grid_array(payload)
    assert table.shape == (2, 2)
    first = [
        r["val_accuracy"]
        for r in payload["records"]
        if (r["temperature"], r["alpha"]) == (2.0, 0.0)
    ]
    assert table[0, 0] == pytest.approx(np.mean(first))
    fig = plot_sweep_heatmap(payload)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert f"{100 * table[1, 1]:.2f}" in texts and len(texts) == 4


def test_config_refuses_bad_grids():
    with pytest.raises(ValueError, match="temperature"):
        sweep.SweepConfig(temperatures=(0.0,), alphas=(0.1,))
    with pytest.raises(ValueError, match="alpha"):
        sweep.SweepConfig(temperatures=(2.0,), alphas=(1.5,))
    with pytest.raises(ValueError, match="at least one"):
        sweep.SweepConfig(temperatures=(), alphas=(0.1,))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--temperatures", "2", "0"], "--temperatures"),
        (["--alphas", "1.5"], "--alphas"),
        (["--seeds", "0"], "--seeds"),
        (["--hidden", "-3"], "--hidden"),
        (["--plot", "heat.jpg"], "must end in .png"),
        (["--json", "no_such_dir/s.json"], "does not exist"),
        (["--load-teacher", "no_such_teacher.keras"], "no such file"),
        (["--save-teacher", "teacher.h5"], "must end in .keras"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_training(argv, fragment, capsys, no_training):
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_cli_sweep_end_to_end(tmp_path, monkeypatch, capsys):
    small_fast_data(monkeypatch, tmp_path / "data")  # fast mode on a tenth of its images
    monkeypatch.delenv("KDLIB_FAST", raising=False)
    common = [
        "sweep",
        "--fast",
        "--teacher",
        "mlp",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--temperatures",
        "3",
        "--alphas",
        "0.2",
        "0.7",
        "--seeds",
        "1",
        "--hidden",
        "8",
    ]
    status = cli.main(
        [
            *common,
            "--json",
            str(tmp_path / "s.json"),
            "--plot",
            str(tmp_path / "s.png"),
            "--save-teacher",
            str(tmp_path / "t.keras"),
        ]
    )
    assert status == 0 and "KDLIB_FAST" not in os.environ
    assert "selected on validation: T = 3" in capsys.readouterr().out
    payload = json.loads((tmp_path / "s.json").read_text())
    assert len(payload["records"]) == 2 and payload["fast"] is True
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved teacher is reused: the second sweep reports the same teacher accuracy
    assert (
        cli.main(
            [
                *common,
                "--load-teacher",
                str(tmp_path / "t.keras"),
                "--json",
                str(tmp_path / "s2.json"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "s2.json").read_text())
    assert again["teacher"]["test_accuracy"] == payload["teacher"]["test_accuracy"]
