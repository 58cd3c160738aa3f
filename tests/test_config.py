"""kdlib.config: the one fast-mode switch."""

from __future__ import annotations

import os

import pytest

from kdlib.config import fast_mode, pick


@pytest.mark.parametrize(
    "value,expected", [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_pick_follows_env(monkeypatch, value, expected):
    monkeypatch.setenv("KDLIB_FAST", value)
    assert fast_mode() is expected
    assert pick(full=10, fast=1) == (1 if expected else 10)


def test_unset_is_full_mode(monkeypatch):
    monkeypatch.delenv("KDLIB_FAST", raising=False)
    assert pick(full="full", fast="fast") == "full"


def test_typo_raises(monkeypatch):
    monkeypatch.setenv("KDLIB_FAST", "ture")
    with pytest.raises(ValueError, match="KDLIB_FAST='ture'"):
        fast_mode()


@pytest.mark.skipif(not os.environ.get("CI"), reason="only meaningful on CI")
def test_ci_really_sets_fast_mode():
    assert fast_mode(), "CI must run with KDLIB_FAST=1 (see .ci/run)"


def test_submodules_resolve_from_import_kdlib():
    import kdlib

    assert kdlib.losses.softmax_with_temperature is not None
    assert kdlib.Distiller.__name__ == "Distiller"
    for name in kdlib._TOP_LEVEL:
        assert getattr(kdlib, name).__name__ == f"kdlib.{name}"
