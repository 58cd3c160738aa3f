"""kdlib.experiment.report.median_ms and machine_state: checked with a fake clock, never
timed."""

from __future__ import annotations

import pytest

from kdlib.experiment import report


def test_median_ms_runs_warmup_untimed_and_takes_the_median(monkeypatch):
    clock = {"now": 0.0}
    durations = iter([9.0, 9.0, 0.005, 0.001, 0.003])  # seconds: 2 warm-up calls, 3 timed
    calls = []

    def fn():
        calls.append(1)
        clock["now"] += next(durations)

    monkeypatch.setattr(report.time, "perf_counter", lambda: clock["now"])
    assert report.median_ms(fn, repeats=3, warmup=2) == pytest.approx(3.0)
    assert len(calls) == 5


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"repeats": 0}, "repeats must be a positive integer"), ({"warmup": -1}, "warmup")],
)
def test_median_ms_rejects_bad_counts(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        report.median_ms(lambda: None, **kwargs)


def test_machine_state_names_cores_and_load(monkeypatch):
    monkeypatch.setattr(report.os, "getloadavg", lambda: (1.5, 0.25, 0.125))
    monkeypatch.setattr(report.os, "cpu_count", lambda: 2)
    assert report.machine_state() == (
        "2 CPU cores, load average 1.50 / 0.25 / 0.12 (1 / 5 / 15 min)"
    )

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(report.os, "getloadavg", unavailable)
    assert report.machine_state() == "2 CPU cores, load average unknown"


def test_device_description_on_every_backend():
    """Names the backend and the device kind; on PyTorch it used to fail (Keras' list_devices
    is None there: ``'NoneType' object has no attribute 'list_devices'``)."""
    import keras

    from kdlib.measurements import device_description

    text = device_description()
    assert f"backend {keras.backend.backend()}" in text
    assert "CPU" in text or "GPU" in text or "cpu" in text or "gpu" in text, text
