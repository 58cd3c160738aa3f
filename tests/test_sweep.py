"""kdlib.sweep and `kdlib sweep`: the grid's records, selection on validation, the JSON,
the heatmap, and flag checks before any training."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import small_fast_data
from reference import write_learnable_mnist

from kdlib import cli, models, sweep
from kdlib import experiment as ex
from kdlib.sweep import grid
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


def sweep_fails_before_training(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdlib sweep: error:"), err
    return err


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (("--json", "--save-teacher"), "run.keras"),
        (("--json", "--plot"), "run.png"),
        (("--json", "--load-teacher"), "run.keras"),
    ],
)
def test_sweep_refuses_json_path_equal_to_save_teacher_or_another_file(
    flags, name, tmp_path, capsys, no_training
):
    """``--json run.keras --save-teacher run.keras`` used to exit 0 with the JSON written
    over the trained teacher."""
    same = tmp_path / name
    same.write_bytes(b"a teacher")
    argv = [part for flag in flags for part in (flag, str(same))]
    err = sweep_fails_before_training(capsys, argv)
    assert flags[0] in err and flags[1] in err and "same file" in err
    assert same.read_bytes() == b"a teacher"


@pytest.mark.parametrize(
    ("grid", "name"),
    [({"temperatures": (2, 2.0)}, "temperatures"), ({"alphas": (0.1, 0.5, 0.1)}, "alphas")],
)
def test_sweep_config_refuses_duplicate_grid_values(grid, name):
    """A repeated value made selected() average two cells' seeds as "mean over 2 seeds" and
    pair one seed's student with another seed's scratch twin."""
    with pytest.raises(ValueError, match=f"{name}.*more than once") as info:
        sweep.SweepConfig(**{"temperatures": (2.0, 4.0), "alphas": (0.1,), **grid})
    assert ("2" if name == "temperatures" else "0.1") in str(info.value)


@pytest.mark.parametrize("argv", [["--temperatures", "2", "2"], ["--alphas", "0.5", "0.50"]])
def test_sweep_refuses_duplicate_grid_flags(argv, capsys, no_training):
    err = sweep_fails_before_training(capsys, argv)
    assert argv[0] in err and "more than once" in err


def test_sweep_refuses_a_teacher_of_another_class_count_before_training(tmp_path, monkeypatch):
    import keras

    path = write_learnable_mnist(tmp_path / "mnist.npz", n_train=600, n_test=200)
    config = sweep.SweepConfig(
        temperatures=(2.0,), alphas=(0.5,), hidden=(8,), experiment=ex.ExperimentConfig(**TINY)
    )
    five = models.mlp(hidden=(8,), num_classes=5, name="five_classes")

    def no_fit(*args, **kwargs):
        raise AssertionError("training started with a 5-class teacher")

    monkeypatch.setattr(keras.Model, "fit", no_fit)
    with pytest.raises(ValueError, match=r"5 classes.*10") as info:
        sweep.run_sweep(config, teacher=five, data_path=path)
    assert "Dimensions must be equal" not in str(info.value)


@pytest.mark.parametrize(
    ("make_teacher", "expected"),
    [
        (lambda: ex.TEACHERS["mlp"](), "mlp"),
        (lambda: models.mlp(hidden=(32,), name="my_own_teacher"), "my_own_teacher"),
    ],
)
def test_a_given_teacher_is_recorded_as_what_it_is(make_teacher, expected, tmp_path):
    """The config says "cnn" (the default) but the teacher passed in is not the CNN."""
    path = write_learnable_mnist(tmp_path / "mnist.npz", n_train=600, n_test=200)
    config = sweep.SweepConfig(
        temperatures=(2.0,),
        alphas=(0.5,),
        hidden=(8,),
        experiment=ex.ExperimentConfig(**{**TINY, "teacher": "cnn", "seeds": 1, "epochs": 1}),
    )
    result = sweep.run_sweep(config, teacher=make_teacher(), data_path=path)
    assert result.teacher["name"] == expected and result.teacher["trained_here"] is False
    assert f"teacher ({expected})" in grid.format_summary(result)


def test_load_teacher_with_a_lambda_layer_is_refused_in_one_line(tmp_path, capsys, no_training):
    import keras

    inputs = keras.Input((28, 28))
    x = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda_teacher.keras"
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(path)
    err = sweep_fails_before_training(capsys, ["--load-teacher", str(path)])
    assert "--load-teacher" in err and "Lambda" in err and "safe_mode" in err


# ----------------------------------------------------------- the outputs, as one set
@pytest.fixture
def canned_sweep(result, monkeypatch):
    """`kdlib sweep` without training: run_sweep returns the module's small sweep."""
    monkeypatch.setattr(grid, "run_sweep", lambda config, **kwargs: result)


def previous_sweep(folder):
    paths = {
        "--json": folder / "s.json",
        "--plot": folder / "s.png",
        "--save-teacher": folder / "t.keras",
    }
    for name, path in paths.items():
        path.write_bytes(f"previous {name}".encode())
    return paths, [part for flag, path in paths.items() for part in (flag, str(path))]


def test_sweep_outputs_share_one_run_id(tmp_path, canned_sweep, capsys):
    paths, argv = previous_sweep(tmp_path)
    assert cli.main(["sweep", *argv]) == 0
    payload = json.loads(paths["--json"].read_text())
    assert len(payload["run_id"]) >= 16
    from PIL import Image

    with Image.open(paths["--plot"]) as png:
        assert png.info["kdlib run_id"] == payload["run_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.png", "t.keras"]
    out = capsys.readouterr().out
    assert all(f"wrote {path}" in out for path in paths.values())


def test_ctrl_c_while_plotting_keeps_every_previous_sweep_output(
    tmp_path, canned_sweep, monkeypatch, capsys
):
    """Ctrl-C right after "wrote s.json" used to leave the new JSON beside the previous
    run's PNG; now nothing is published and nothing claims to be written."""
    import matplotlib.figure

    paths, argv = previous_sweep(tmp_path)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["sweep", *argv])
    for name, path in paths.items():
        assert path.read_bytes() == f"previous {name}".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.png", "t.keras"]
    assert "wrote" not in capsys.readouterr().out
