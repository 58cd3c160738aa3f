"""kdlib.check: right answers pass, known mistakes fail with a message that says why.

The "right answers" are the NumPy references of tests/reference.py (the gradient by finite
differences), so the references inside kdlib.check are tested against independent code.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reference import (
    np_cross_entropy_pq,
    np_distillation,
    np_kl,
    np_log_softmax,
    np_numeric_gradient,
    np_softmax,
)

import kdlib.check as check
from kdlib.formatting import fmt


# ----------------------------------------------------------------- independent solutions
def distillation_gradient_fd(t, s, temperature):
    """Finite differences of the numpy loss: independent of the analytic formula."""
    return np_numeric_gradient(lambda v: np_distillation(t, v, temperature), s)


# ------------------------------------------------------------------------ naive attempts
def naive_softmax(z, temperature=1.0):
    e = np.exp(np.asarray(z) / temperature)
    return e / e.sum(axis=-1, keepdims=True)


def naive_kl(p, q):
    return np.sum(p * np.log(p / q))


@pytest.mark.parametrize(
    ("name", "solution"),
    [
        ("softmax", np_softmax),
        ("log_softmax", np_log_softmax),
        ("kl_divergence", np_kl),
        ("cross_entropy", np_cross_entropy_pq),
        ("distillation_loss", np_distillation),
        ("distillation_gradient", distillation_gradient_fd),
    ],
)
def test_independent_solutions_pass(name, solution, capsys):
    assert getattr(check, name)(solution) is True
    out = capsys.readouterr().out
    assert out.startswith(f"passed: {name} matches the reference")


def test_float32_solution_passes(capsys):
    def softmax32(z, temperature=1.0):
        z = np.asarray(z, dtype=np.float32) / np.float32(temperature)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    assert check.softmax(softmax32) is True


def test_naive_softmax_reports_the_overflow(capsys):
    assert check.softmax(naive_softmax) is False
    out = capsys.readouterr().out
    assert "fails for logits [1000, 0], temperature=1: got [nan, 0], expected [1, 0]" in out
    assert "overflow encountered in exp" in out
    assert "hint: " in out and "max(z)" in out


def test_student_warnings_do_not_leak():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            assert check.softmax(naive_softmax) is False


def test_softmax_without_last_axis_fails_on_the_batch(capsys):
    def whole_array(z, temperature=1.0):
        z = np.asarray(z) / temperature
        e = np.exp(z - z.max())
        return e / e.sum()

    assert check.softmax(whole_array) is False
    out = capsys.readouterr().out
    assert "1 of 12 cases fail" in out and "batch of logits" in out


def test_softmax_ignoring_temperature_fails(capsys):
    assert check.softmax(lambda z, temperature=1.0: np_softmax(z)) is False
    assert "temperature" in capsys.readouterr().out


def test_log_of_softmax_reports_minus_inf(capsys):
    assert check.log_softmax(lambda z, t=1.0: np.log(np_softmax(z, t))) is False
    out = capsys.readouterr().out
    assert "fails for logits [1000, 0], temperature=1: got [0, -inf], expected [0, -1000]" in out


def test_naive_kl_reports_nan_for_zero_probabilities(capsys):
    assert check.kl_divergence(naive_kl) is False
    out = capsys.readouterr().out
    assert "fails for p=[0, 0.5, 0.5], q=[0.2, 0.4, 0.4]: got nan, expected 0.223144" in out
    assert "got shape (), expected shape (2,)" in out
    # The expected value is the NumPy formula, not kdlib's own output.
    assert f"{np_kl(np.array([0, 0.5, 0.5]), np.array([0.2, 0.4, 0.4])):.6g}" == "0.223144"


def test_swapped_kl_is_diagnosed(capsys):
    assert check.kl_divergence(lambda p, q: np_kl(q, p)) is False
    assert "you computed KL(q || p)" in capsys.readouterr().out


def test_kl_in_bits_is_diagnosed(capsys):
    assert check.kl_divergence(lambda p, q: np_kl(p, q) / np.log(2)) is False
    assert "bits" in capsys.readouterr().out


def test_epsilon_clipping_fails(capsys):
    def clipped(p, q):
        p, q = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
        return np.sum(p * np.log(p / q), axis=-1)

    assert check.kl_divergence(clipped) is False
    assert "p=[0.5, 0.5], q=[1, 0]: got" in capsys.readouterr().out


def test_swapped_cross_entropy_is_diagnosed(capsys):
    assert check.cross_entropy(lambda p, q: np_cross_entropy_pq(q, p)) is False
    assert "swapped" in capsys.readouterr().out


def test_missing_t_squared_is_diagnosed(capsys):
    def no_t2(t, s, temperature):
        return np_distillation(t, s, temperature) / temperature**2

    assert check.distillation_loss(no_t2) is False
    assert "hint: the T**2 factor is missing" in capsys.readouterr().out


def test_swapped_teacher_and_student_is_diagnosed(capsys):
    assert check.distillation_loss(lambda t, s, T: np_distillation(s, t, T)) is False
    assert "teacher and student are swapped" in capsys.readouterr().out


def test_softmax_underflow_in_distillation_loss_is_reported(capsys):
    def via_probabilities(t, s, temperature):
        p, q = np_softmax(t, temperature), np_softmax(s, temperature)
        return temperature**2 * np_kl(p, q)

    assert check.distillation_loss(via_probabilities) is False
    out = capsys.readouterr().out
    assert "student logits [-1000, 0, 1000], temperature=2: got inf" in out
    assert "log-softmax" in out


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda t, s, T: -T * (np_softmax(s, T) - np_softmax(t, T)), "sign is flipped"),
        (lambda t, s, T: (np_softmax(s, T) - np_softmax(t, T)) / T, "without T**2"),
        (lambda t, s, T: np_softmax(s, T) - np_softmax(t, T), "one factor of T is missing"),
    ],
)
def test_gradient_mistakes_are_diagnosed(wrong, hint, capsys):
    assert check.distillation_gradient(wrong) is False
    assert hint in capsys.readouterr().out


def test_exceptions_and_bad_return_values_are_reported(capsys):
    def raises(z, temperature=1.0):
        raise ZeroDivisionError("oops")

    assert check.softmax(raises) is False
    assert "raised ZeroDivisionError: oops" in capsys.readouterr().out
    assert check.softmax(lambda z, temperature=1.0: "nope") is False
    assert "which is not an array of numbers" in capsys.readouterr().out
    assert check.softmax(lambda z, temperature=1.0: None) is False
    assert "fails for" in capsys.readouterr().out


def test_inputs_mutated_by_the_student_do_not_change_later_cases(capsys):
    def mutating(z, temperature=1.0):
        result = np_softmax(z, temperature)
        z[...] = 0.0
        return result

    assert check.softmax(mutating) is True


def test_not_a_function_raises_a_clear_error():
    with pytest.raises(TypeError, match=r"kdlib.check.softmax\(my_softmax\)"):
        check.softmax(np_softmax([1.0, 2.0]))


def test_output_is_deterministic(capsys):
    check.kl_divergence(naive_kl)
    first = capsys.readouterr().out
    check.kl_divergence(naive_kl)
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("values", "digits", "text"),
    [
        ([0.28943, 0.31987, 0.3907], 4, "[0.2894, 0.3199, 0.3907]"),
        (0.020135, 4, "0.0201"),
        ([np.nan, np.inf, -np.inf], 2, "[nan, inf, -inf]"),
        ([[1.0, 2.0], [3.0, 4.5]], 1, "[[1.0, 2.0], [3.0, 4.5]]"),
        (-1e-9, 4, "0.0000"),
        (np.float32(0.5), 3, "0.500"),
    ],
)
def test_fmt(values, digits, text):
    assert fmt(values, digits) == text


def test_fmt_from_kdlib_check_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="kdlib.formatting"):
        old = check.fmt
    assert old is fmt
