"""benchmarks/suite_time.py refuses bad arguments before it checks anything out or runs a
suite (running it takes minutes: its numbers are in the closing note of issue 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("suite_time", folder="benchmarks")


def worktrees() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--baseline", "no-such-revision"], "--baseline 'no-such-revision' is not a commit"),
        (["--rounds", "0"], "--rounds 0: must be at least 1"),
        (["--workers", "-1"], "--workers -1: must be 0 (one process) or more"),
        (["--baseline-workers", "-2"], "--baseline-workers -2: must be 0"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value_and_leave_no_worktree(
    bench, argv, fragment, capsys
):
    before = worktrees()
    with pytest.raises(SystemExit) as done:
        bench.main(argv)
    assert done.value.code == 2
    assert fragment in capsys.readouterr().err
    assert worktrees() == before


def test_commands_run_each_suite_as_its_make_test_does(bench):
    serial = bench.pytest_command([], 0, this_tree=False)
    assert serial[-3:] == ["-p", "no:xdist", "tests"]
    workers = bench.pytest_command(["tests/test_losses.py"], 2, this_tree=True)
    flags = bench.UNIT_FLAGS + bench.UNIT_WORKER_FLAGS
    assert workers[-len(flags) - 3 :] == ["-n", "2", *flags, "tests/test_losses.py"]
    one_process = bench.pytest_command([], 0, this_tree=True)
    assert one_process[-len(bench.UNIT_FLAGS) - 3 :] == [
        "-p",
        "no:xdist",
        *bench.UNIT_FLAGS,
        "tests",
    ]
    # the same flags as the unit-test line of this tree's Makefile
    unit_line = next(
        line
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "-m pytest" in line and "-p no:nbval" in line and "tests" in line.split()
    )
    marker = bench.UNIT_FLAGS[1]
    assert " ".join(flags).replace(marker, f"'{marker}'") in unit_line, unit_line


def test_a_suite_that_hangs_ends_the_benchmark_with_an_error(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "RUN_TIMEOUT_S", 0.5)
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(SystemExit, match="ran past 0.5 s"):
        bench.timed(hang, tmp_path)


def test_the_longest_first_order_names_test_files_that_exist():
    from conftest import LONGEST_FIRST

    missing = [name for name in LONGEST_FIRST if not list((ROOT / "tests").rglob(name))]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that are gone: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
