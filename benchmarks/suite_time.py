"""Seconds for the unit suite, this tree against an earlier revision, measured side by side.

Issue 8 asks for the unit suite in half the time it took at a given revision. Timings on a
shared machine drift with its load, so this runs both suites in the same session, alternating
(baseline, then this tree, then the baseline again...), and prints each run, the load
average around it, and the ratio of the medians. The baseline is checked out into a
temporary ``git worktree`` (removed afterwards) and runs with this tree's Python; each suite
runs as its own ``make test`` runs it: the baseline's in one process unless ``--baseline-
workers`` says otherwise, this tree's with ``--workers`` pytest-xdist workers (``make test``
uses every core, at most 4). ``--same-files`` restricts this tree to the test files the
baseline had, so the two suites cover the same ground. ``KDLIB_FAST=1`` for both, as in CI.

    python benchmarks/suite_time.py                          # 5218cc7 (issue 8), 2 rounds
    python benchmarks/suite_time.py --same-files --rounds 3 --json suite_time.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The revision issue 8 describes ("the unit suite runs in half its current time").
ISSUE_8_BASELINE = "5218cc7"
#: The longest one suite may run (seconds): a hung test ends the benchmark with an error.
RUN_TIMEOUT_S = 1800


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=ISSUE_8_BASELINE, help="a git revision")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each suite (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers for this tree")
    parser.add_argument(
        "--baseline-workers", type=int, default=0, help="xdist workers for the baseline (0: none)"
    )
    parser.add_argument(
        "--same-files", action="store_true", help="only the test files the baseline had"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the runs as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    for name in ("workers", "baseline_workers"):
        if getattr(args, name) < 0:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} {getattr(args, name)}: must be 0 (one process) or more")
    revision = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "rev-parse",
            "--verify",
            "--quiet",
            f"{args.baseline}^{{commit}}",
        ],
        capture_output=True,
        text=True,
    )
    if revision.returncode != 0:
        parser.error(f"--baseline {args.baseline!r} is not a commit of this repository")
    args.commit = revision.stdout.strip()
    return args


#: What ``make test`` gives pytest for this tree's unit suite (its Makefile), besides the
#: workers: no nbval plugin (it imports the Jupyter stack in every process), each test file
#: on one worker, in the order tests/conftest.py gives (longest first).
#: tests/tools/test_suite_time.py checks that the Makefile agrees.
UNIT_FLAGS = ["-m", "not browser and not distributed", "-p", "no:nbval"]
UNIT_WORKER_FLAGS = ["--dist", "loadfile", "--no-loadscope-reorder"]


def pytest_command(files: list[str], workers: int, this_tree: bool) -> list[str]:
    """``pytest`` on ``files`` (all of ``tests/`` if empty), in one process or on workers,
    with :data:`UNIT_FLAGS` for this tree (the baseline's ``make test`` gave none)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    if this_tree:
        command += UNIT_FLAGS + (UNIT_WORKER_FLAGS if workers else [])
    return command + (files or ["tests"])


def timed(command: list[str], tree: Path) -> dict:
    """One run: wall seconds, pytest's summary line and the 1-minute load before and after."""
    env = dict(os.environ, KDLIB_FAST="1", PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{' '.join(command)} ran past {RUN_TIMEOUT_S} s in {tree}") from None
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines() or ["(no output)"]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {tree}:\n" + "\n".join(lines[-20:]))
    return {
        "seconds": round(seconds, 2),
        "summary": lines[-1].strip("= "),
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="suite-time-") as folder:
        base = Path(folder) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base)]
            + [args.commit],
            check=True,
        )
        try:
            files = sorted(f"tests/{p.name}" for p in (base / "tests").glob("test_*.py"))
            suites = {
                f"baseline {args.baseline}": (
                    base,
                    pytest_command([], args.baseline_workers, this_tree=False),
                ),
                "this tree" + (" (the baseline's files)" if args.same_files else ""): (
                    ROOT,
                    pytest_command(files if args.same_files else [], args.workers, this_tree=True),
                ),
            }
            runs: dict[str, list[dict]] = {name: [] for name in suites}
            for round_ in range(1, args.rounds + 1):
                for name, (tree, command) in suites.items():
                    run = timed(command, tree)
                    runs[name].append(run)
                    print(
                        f"round {round_}  {name:40s} {run['seconds']:7.1f} s  load "
                        f"{run['load'][0]:.2f} -> {run['load'][1]:.2f}  {run['summary']}",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
            )
    medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    (base_name, base_s), (this_name, this_s) = medians.items()
    print(f"\nmedian: {base_name} {base_s:.1f} s, {this_name} {this_s:.1f} s")
    print(f"ratio (this tree / baseline): {this_s / base_s:.2f}")
    if args.json:
        from kdlib.io import write_json

        write_json(
            args.json,
            {
                "baseline": args.baseline,
                "commit": args.commit,
                "workers": args.workers,
                "baseline_workers": args.baseline_workers,
                "same_files": args.same_files,
                "runs": runs,
                "median_seconds": medians,
                "ratio": round(this_s / base_s, 3),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
