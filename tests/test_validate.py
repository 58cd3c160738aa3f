"""kdlib.validate: each rule once, and every boundary that takes a temperature applies it.

The range [0.01, 1e6] is where the distillation loss is accurate in float32 (test_losses.py
checks the loss against a float64 reference over that range).
"""

from __future__ import annotations

import numpy as np
import pytest

from kdlib import cli, losses, validate
from kdlib.distiller import Distiller

NOT_A_TEMPERATURE = [0, -1.0, -2, float("nan"), float("inf"), "3", "hot", None, True, [2.0]]
OUTSIDE_THE_RANGE = [1e-3, 1e-5, 1e-38, 2e6, 1e20]


@pytest.mark.parametrize("bad", NOT_A_TEMPERATURE)
def test_a_temperature_must_be_a_finite_real_number_above_zero(bad):
    with pytest.raises(ValueError, match=r"temperature must be a finite real number > 0"):
        validate.temperature(bad)


@pytest.mark.parametrize("bad", OUTSIDE_THE_RANGE)
def test_a_distillation_temperature_must_lie_in_the_accurate_range(bad):
    with pytest.raises(ValueError, match=r"temperature must be between 0\.01 and 1e\+06"):
        validate.temperature(bad)
    assert validate.temperature(bad, distillation=False) == bad  # a plain softmax is exact


@pytest.mark.parametrize(
    "value", [0.01, 1e6, 3, np.float32(2.5), np.float64(4.0), np.array(0.5), np.int64(7)]
)
def test_numbers_of_every_kind_come_back_as_the_same_float(value):
    got = validate.temperature(value)
    assert type(got) is float and got == pytest.approx(float(value), rel=1e-7)


def _refusals(temperature: float) -> dict[str, str]:
    """What each boundary that takes a temperature says to ``temperature``."""
    said = {}
    z = np.zeros((1, 3))
    calls = {
        "softmax_with_temperature": lambda: losses.softmax_with_temperature(z, temperature),
        "distillation_loss": lambda: losses.distillation_loss(z, z, temperature),
        "DistillationLoss": lambda: losses.DistillationLoss(temperature=temperature),
        "Distiller.compile": lambda: _distiller().compile(temperature=temperature),
    }
    for where, call in calls.items():
        with pytest.raises(ValueError) as err:
            call()
        said[where] = str(err.value)
    return said


def _distiller() -> Distiller:
    import keras

    def model(name: str) -> keras.Model:
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3)(inputs), name=name)

    return Distiller(teacher=model("t"), student=model("s"))


@pytest.mark.parametrize("bad", [0.0, float("nan"), "hot"])
def test_every_boundary_refuses_a_bad_temperature_with_the_rule_s_message(bad):
    with pytest.raises(ValueError) as rule:
        validate.temperature(bad)
    assert set(_refusals(bad).values()) == {str(rule.value)}


def test_the_distillation_boundaries_refuse_the_range_the_softmax_accepts():
    z = np.zeros((1, 3))
    p = np.asarray(losses.softmax_with_temperature(z, 1e20), dtype=np.float64)
    assert np.allclose(p, 1 / 3)  # exact at any finite T > 0
    for call in (
        lambda: losses.distillation_loss(z, z, 1e20),
        lambda: losses.DistillationLoss(temperature=1e20),
        lambda: _distiller().compile(temperature=1e20),
    ):
        with pytest.raises(ValueError, match=r"between 0\.01 and 1e\+06"):
            call()


@pytest.mark.parametrize(
    "value, says", [("1e20", "between"), ("1e-5", "between"), ("0", "> 0"), ("hot", "> 0")]
)
def test_the_command_refuses_a_bad_temperature_in_one_line_before_training(capsys, value, says):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["distill", "--temperature", value])  # refused while parsing: nothing trains
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--temperature" in err and says in err
