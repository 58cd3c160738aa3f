#!/usr/bin/env python
"""Release and autograde every assignment in a throwaway nbgrader course (``make assignments``).

For each ``assignments/source/<name>/`` it

1. copies ``assignments/`` (config and sources) into a temporary course directory;
2. runs ``nbgrader generate_assignment`` and checks that the released notebook has no
   solution and no hidden test left in it;
3. submits two notebooks: the instructor's solution (the source notebook) and the released
   notebook untouched (a blank submission);
4. runs ``nbgrader autograde`` and reads the gradebook: the solution must score every
   autograded point, the blank submission none, and the grader must not fail.

It prints one line per check and a closing line with the counts, and exits with 1 on any
failure. The temporary course is removed at the end, whatever happens.

Usage::

    python scripts/grade_assignments.py            # every assignment
    python scripts/grade_assignments.py --keep DIR # keep the course directory in DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "assignments"
#: Text that must never reach students: nbgrader's markers around solutions and hidden tests.
FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
#: A bound on each nbgrader command (the MNIST cell trains two small models).
TIMEOUT_S = 900


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command in ``course``; raise with its output if it fails."""
    cmd = [sys.executable, "-m", "nbgrader", *args, "--CourseDirectory.root=" + str(course)]
    # nbgrader runs `alembic` (installed beside this Python) by name: put its folder first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        cmd, cwd=course, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`nbgrader {' '.join(args)}` failed with status {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def check_release(notebook: Path) -> list[str]:
    """Problems of a released notebook: leftover solutions or hidden tests."""
    text = notebook.read_text(encoding="utf-8")
    problems = [
        f"{notebook.name} still contains {marker!r}" for marker in FORBIDDEN if marker in text
    ]
    nb = nbformat.read(notebook, as_version=4)
    stubs = sum(
        "raise NotImplementedError()" in c.source for c in nb.cells if c.cell_type == "code"
    )
    solutions = sum(c.metadata.get("nbgrader", {}).get("solution", False) for c in nb.cells)
    code_solutions = sum(
        c.metadata.get("nbgrader", {}).get("solution", False) and c.cell_type == "code"
        for c in nb.cells
    )
    if stubs != code_solutions:
        problems.append(f"{notebook.name}: {code_solutions} code answers but {stubs} stubs")
    if solutions == 0:
        problems.append(f"{notebook.name} has no answer cells")
    return problems


def scores(course: Path, assignment: str, student: str) -> tuple[float, float, bool]:
    """(autograded score, autograded maximum, needs manual grading) of one submission."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(assignment, student)
        return submission.code_score, submission.max_code_score, submission.needs_manual_grade


def grade(name: str, course: Path) -> list[str]:
    """Release, submit and autograde assignment ``name``; return the failed checks."""
    failures: list[str] = []
    nbgrader(course, "generate_assignment", name, "--force")
    released = sorted((course / "release" / name).glob("*.ipynb"))
    print(f"{name}: released {[p.name for p in released]}")
    for notebook in released:
        failures += check_release(notebook)
    submissions = {
        "solution": course / "source" / name,
        "blank": course / "release" / name,
    }
    for student, folder in submissions.items():
        target = course / "submitted" / student / name
        target.mkdir(parents=True)
        for notebook in folder.glob("*.ipynb"):
            shutil.copy(notebook, target / notebook.name)
    nbgrader(course, "autograde", name, "--force")
    got = {student: scores(course, name, student) for student in submissions}
    for student, (score, maximum, manual) in got.items():
        print(
            f"{name}: {student} scored {score:g} of {maximum:g} autograded points"
            f"{' (+ answers to grade by hand)' if manual else ''}"
        )
    score, maximum, _ = got["solution"]
    if maximum <= 0 or score != maximum:
        failures.append(f"{name}: the solution scored {score:g} of {maximum:g}, not full marks")
    if got["blank"][0] != 0:
        failures.append(f"{name}: the blank submission scored {got['blank'][0]:g}, not 0")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the course directory here")
    args = parser.parse_args(argv)
    names = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
    if not names:
        print(f"no assignments under {ASSIGNMENTS / 'source'}", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="kdlib-course-"))
    course = tmp / "course"
    failures: list[str] = []
    try:
        shutil.copytree(ASSIGNMENTS, course, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for name in names:
            try:
                failures += grade(name, course)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                failures.append(f"{name}: {error}")
        if args.keep:
            shutil.copytree(course, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    print(f"assignments: {len(names)} graded, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
