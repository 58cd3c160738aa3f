"""benchmarks/gpu_check.py: its reduced form runs (CI has no GPU) and its parts do their job.

``test_reduced_form`` runs the command on every backend installed (``make test-distributed``
runs it, after installing JAX and PyTorch; ``make test`` deselects it: marker
``distributed``). No GPU was lent to this project, so the full form has not been run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import ROOT, load_script

gpu_check = load_script("gpu_check", "benchmarks")  # stdlib only at import: cheap

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a" name="test_bad" time="0.1"><failure message="x"/></testcase>
<testcase classname="tests.test_b" name="test_skip" time="0"><skipped message="s"/></testcase>
<testcase classname="tests.test_b" name="test_err" time="0"><error message="e"/></testcase>
</testsuite></testsuites>"""


def test_junit_counts(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    counts = gpu_check.junit_counts(path)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 2, 1)
    assert counts["failures"] == ["tests.test_a::test_bad", "tests.test_b::test_err"]


def test_configurations_cover_float32_xla_and_mixed_precision():
    full = gpu_check.configurations("tensorflow", gpu=True, fast=False)
    assert [(policy, jit) for _, policy, jit in full] == [
        ("float32", False),
        ("float32", True),
        ("mixed_bfloat16", True),
        ("mixed_float16", True),
    ]
    assert all(jit for _, _, jit in gpu_check.configurations("jax", gpu=True, fast=False))
    assert not any(jit for _, _, jit in gpu_check.configurations("torch", gpu=True, fast=False))
    reduced = gpu_check.configurations("tensorflow", gpu=False, fast=True)
    assert [policy for _, policy, _ in reduced] == ["float32", "mixed_bfloat16"]


def test_run_bounded_stops_the_process_group(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    start = time.monotonic()
    assert gpu_check.run_bounded(command, None, 1.0, tmp_path / "log") is None
    assert time.monotonic() - start < 10
    assert gpu_check.run_bounded(command, None, 0.0, tmp_path / "log") is None  # not started
    assert "not started" in (tmp_path / "log").read_text()
    ok = [sys.executable, "-c", "raise SystemExit(4)"]
    assert gpu_check.run_bounded(ok, None, 60.0, tmp_path / "log") == 4


@pytest.mark.distributed
def test_reduced_form(tmp_path):
    """Every backend installed: step times of the three rows under float32 and mixed
    precision, their ratios, and the test passed on the CPU."""
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--fast", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1000,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)
    assert report["form"] == "reduced (--fast)"
    assert "tensorflow" in report["backends"]
    for backend, entry in report["backends"].items():
        assert entry["status"] == "ok", (backend, entry)
        assert len(entry["timings"]) == 2, backend
        for name, timing in entry["timings"].items():
            ms = timing["step_ms"]
            assert all(ms[row] > 0 for row in gpu_check.ROWS), (backend, name)
            assert timing["online_over_student"] == pytest.approx(
                ms["online"] / ms["student"], rel=1e-2
            )
            assert timing["cached_over_student"] == pytest.approx(
                ms["cached"] / ms["student"], rel=1e-2
            )
        assert entry["tests"]["status"] == "ok" and entry["tests"]["passed"] >= 1, backend
        assert entry["tests"]["failed"] == 0, backend
