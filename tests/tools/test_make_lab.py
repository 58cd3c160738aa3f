"""`make lab`, the README's main command, started the way CI starts it: in the background.

The test holds JupyterLab's default port (8888) on 127.0.0.1, so the server must move to
another port and the URL it prints must be the real one; it sets ``KDLIB_DATA_DIR`` and
reads it back from a kernel; it lists the notebooks through the server's contents API; then
it stops the server by its PID and checks that nothing it started is left running. As root
(CI, Docker) it also checks the one-line ``--allow-root`` note.

``make -o .venv/.installed lab`` runs the recipe of ``make lab`` exactly, without re-checking
the install (``make test`` has just made it, and a worktree must never reinstall).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from labserver import LabServer, alive

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DEFAULT_PORT = 8888
START_TIMEOUT_S = 120  # JupyterLab starts in ~5 s; a busy 2-core CI machine may take longer


def _hold_port(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:port so JupyterLab finds it taken (None if it already is)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_serves_the_notebooks_and_stops_cleanly(tmp_path):
    assert (ROOT / ".venv" / "bin" / "jupyter").exists(), "run `make test` first (it makes .venv)"
    env = dict(os.environ, KDLIB_DATA_DIR=str(tmp_path / "data dir"))
    for var in ("DISPLAY", "WAYLAND_DISPLAY"):  # a machine without a desktop, like CI
        env.pop(var, None)
    # A private runtime dir: the server's connection files go there, not into ~/.local.
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    held = _hold_port(DEFAULT_PORT)
    lab = LabServer(["make", "--no-print-directory", "-o", ".venv/.installed", "lab"], ROOT, env)
    try:
        with lab:
            lab.wait_ready(timeout=START_TIMEOUT_S)

            assert lab.port != DEFAULT_PORT, f"port {DEFAULT_PORT} was taken:\n{lab.log()}"
            first = NOTEBOOKS[0] if NOTEBOOKS else ""
            assert lab.url.startswith(f"{lab.base}lab/tree/{first}?token="), lab.url
            notes = [line for line in lab.lines if line.startswith("make lab:")]
            if os.geteuid() == 0:
                assert any("--allow-root" in line for line in notes), lab.log()
            else:
                assert not any("--allow-root" in line for line in notes), lab.log()
            assert any("URL" in line for line in notes), notes  # no desktop: says what to open

            listed = lab.get_json("/api/contents")
            names = {item["name"] for item in listed["content"]}
            assert set(NOTEBOOKS) <= names, f"missing: {set(NOTEBOOKS) - names}"
            kinds = {item["name"]: item["type"] for item in listed["content"]}
            assert all(kinds[name] == "notebook" for name in NOTEBOOKS)
            with pytest.raises(urllib.error.HTTPError) as denied:  # the token is required
                urllib.request.urlopen(f"{lab.base}api/contents", timeout=10)
            assert denied.value.code == 403

            printed = lab.run_code("import os; print(os.environ.get('KDLIB_DATA_DIR'))")
            assert printed.strip() == env["KDLIB_DATA_DIR"]
            started = lab.started()
            assert lab.stop() == [], f"SIGTERM did not stop make lab:\n{lab.log()}"
    finally:
        if held is not None:
            held.close()

    assert lab.process.returncode is not None, "make lab still runs"
    left = [pid for pid, start_time in started.items() if alive(pid, start_time)]
    assert not left, f"processes left behind: {left}"
    with pytest.raises(OSError):  # nothing answers on the port any more
        urllib.request.urlopen(f"{lab.base}api/status", timeout=5)


def _phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return [t for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for t in line.split()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_and_bare_make_list_every_target_on_one_line():
    run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 60}
    helped = subprocess.run(["make", "--no-print-directory", "help"], **run)
    bare = subprocess.run(["make", "--no-print-directory"], **run)
    assert helped.returncode == bare.returncode == 0, helped.stderr + bare.stderr
    assert bare.stdout == helped.stdout
    listed = [line.split()[0] for line in helped.stdout.splitlines()[1:]]
    targets = _phony_targets()
    assert {"test", "lab", "help", "test-browser"} <= set(targets)
    assert sorted(listed) == sorted(targets), "each .PHONY target needs one `## name: ...` line"
    for line in helped.stdout.splitlines()[1:]:
        assert len(line.split(maxsplit=1)) == 2, f"no description: {line!r}"
