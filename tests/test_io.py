"""kdlib.io: a write either completes or leaves the previous file, never a temporary file,
whatever interrupts it (an exception, Ctrl-C, a full disk)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat

import numpy as np
import pytest

from kdlib import io


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_json_and_text(tmp_path):
    io.write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    io.write_text(tmp_path / "a.json", "new\n")
    assert (tmp_path / "a.json").read_text() == "new\n"
    assert listing(tmp_path) == ["a.json"]


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("boom"), KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left")],
)
def test_a_failed_write_keeps_the_previous_file(tmp_path, failure):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")
    with pytest.raises(type(failure)):
        with io.atomic_path(target) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".keras"
            temporary.write_bytes(b"half")
            raise failure
    assert target.read_bytes() == b"previous"
    assert listing(tmp_path) == ["model.keras"]


def test_unserialisable_json_leaves_the_file_alone(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("{}")
    with pytest.raises(TypeError):
        io.write_json(target, {"bad": object()})
    assert target.read_text() == "{}" and listing(tmp_path) == ["r.json"]


def test_output_set_publishes_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.png"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(KeyboardInterrupt):
        with io.OutputSet() as outputs:
            outputs.stage(a).write_text("new a")
            outputs.stage(b).write_text("new b")
            raise KeyboardInterrupt  # after both were written, before the renames
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with io.OutputSet() as outputs:
        outputs.stage(a).write_text("new a")
        outputs.stage(b).write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert listing(tmp_path) == ["a.json", "b.png"]


@pytest.fixture
def sigint_handler():
    """Set the process's SIGINT handler for one test, whatever the test runner inherited
    (a background job, e.g. under ``nohup ... &``, starts with SIGINT ignored)."""
    before = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, before)


def _publish_with_ctrl_c_after_first_rename(tmp_path, monkeypatch):
    outputs = io.OutputSet()
    targets = [tmp_path / f"{i}.txt" for i in range(3)]
    for target in targets:
        outputs.stage(target).write_text("new")
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the first rename

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    return outputs, targets


def test_ctrl_c_during_the_renames_waits_until_they_are_done(
    tmp_path, monkeypatch, sigint_handler
):
    sigint_handler(signal.default_int_handler)  # Python's own: Ctrl-C is a KeyboardInterrupt
    outputs, targets = _publish_with_ctrl_c_after_first_rename(tmp_path, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        outputs.publish()
    assert [t.read_text() for t in targets] == ["new"] * 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stays_ignored_where_the_process_ignores_it(tmp_path, monkeypatch, sigint_handler):
    sigint_handler(signal.SIG_IGN)  # a background job: Ctrl-C must not stop the publishing
    outputs, targets = _publish_with_ctrl_c_after_first_rename(tmp_path, monkeypatch)
    outputs.publish()
    assert [t.read_text() for t in targets] == ["new"] * 3
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_ctrl_c_reaches_a_handler_of_the_program_after_the_renames(
    tmp_path, monkeypatch, sigint_handler
):
    seen = []
    sigint_handler(lambda signum, frame: seen.append(len(list(tmp_path.glob("*.txt")))))
    outputs, targets = _publish_with_ctrl_c_after_first_rename(tmp_path, monkeypatch)
    outputs.publish()
    assert seen == [3], "the program's own handler runs once, after every rename"
    assert [t.read_text() for t in targets] == ["new"] * 3


def test_same_target_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        with io.OutputSet() as outputs:
            outputs.stage(tmp_path / "x.json")
            outputs.stage(tmp_path / "." / "x.json")
    assert listing(tmp_path) == []


def test_new_files_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        io.write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_probe_folder(tmp_path):
    io.probe_folder(tmp_path / "x.json")
    assert listing(tmp_path) == []
    with pytest.raises(OSError):
        io.probe_folder(tmp_path / "missing" / "x.json")


def test_write_json_is_strict_json_with_null_for_nan_and_infinity(tmp_path):
    target = tmp_path / "r.json"
    io.write_json(target, {"p": float("nan"), "t": [float("inf"), -np.inf, np.float64("nan")]})
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(text, parse_constant=refuse) == {"p": None, "t": [None, None, None]}


def test_write_json_onto_a_symlink_writes_the_file_it_points_to(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "latest.json"
    real.write_text('{"old": true}\n')
    link = tmp_path / "results.json"
    link.symlink_to(real)
    io.write_json(link, {"new": True})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == {"new": True}
    assert listing(tmp_path / "runs") == ["latest.json"] and listing(tmp_path) == [
        "results.json",
        "runs",
    ]


_STAGE_AND_WAIT = """
import signal, sys, time
from pathlib import Path
from kdlib import io

# SIGHUP's default action, as in a terminal, even when the tests run under nohup (which
# ignores it, and kdlib rightly leaves an ignored signal alone)
signal.signal(signal.SIGHUP, signal.SIG_DFL)

folder = Path(sys.argv[1])
with io.OutputSet() as outputs:
    outputs.stage(folder / "student.keras").write_bytes(b"half a model")
    outputs.stage(folder / "r.json").write_text("{}")
    print("staged", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_during_a_write_leaves_no_temporary_file(tmp_path, signum):
    """A killed run (``kill``, a closed terminal) cleans up as Ctrl-C does: the previous
    files stay, no hidden ``.student.XXXX.tmp.keras`` is left, and the process still ends
    by that signal."""
    import subprocess
    import sys

    (tmp_path / "student.keras").write_bytes(b"previous")
    child = subprocess.Popen(
        [sys.executable, "-c", _STAGE_AND_WAIT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "staged\n"
        assert len(listing(tmp_path)) == 3  # the two temporaries and the previous file
        child.send_signal(signum)
        # Bounded generously: a loaded CI machine may take a while to schedule the child.
        assert child.wait(timeout=120) == -signum
    finally:
        child.kill()
        child.wait()
    assert listing(tmp_path) == ["student.keras"]
    assert (tmp_path / "student.keras").read_bytes() == b"previous"
