#!/usr/bin/env python
"""Release and autograde every assignment in a throwaway nbgrader course (``make assignments``).

For each ``assignments/source/<name>/`` it

1. copies ``assignments/`` (config, sandbox and sources) into a temporary course directory;
2. runs ``nbgrader generate_assignment`` and checks that the released notebook has no
   solution and no hidden test left in it;
3. builds submissions from the released notebook (so they stay in step with it), each with
   the score it must get:

   - ``solution``: every answer cell filled with the instructor's solution: full marks;
   - ``blank``: the released notebook untouched: 0;
   - ``malicious``: the solution, with code that first tries to read the source notebook,
     the gradebook and the hidden tests, delete ``source/``, write outside its folder and
     open a network socket: full marks (what its answers earn), every attempt denied, and
     ``source/`` unchanged afterwards;
   - and, for ``distillation_loss``, the submissions of :data:`VARIANTS`: a part-1 loss
     without T² (every other part still scores), NumPy's comparisons patched to always say
     "equal" (only the part it really answers scores), an ensemble loss that computes
     0 log 0 as nan (only part 2 lost), a solution that warns and writes to stderr (full
     marks);

4. runs ``nbgrader autograde`` (in the sandbox that ``nbgrader_config.py`` sets up) and reads
   the gradebook.

It prints a table of expected and obtained scores and exits with 1 on any mismatch or failed
check. The temporary course is removed at the end, whatever happens.

Usage::

    python scripts/grade_assignments.py            # every assignment
    python scripts/grade_assignments.py --keep DIR # keep the course directory in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "assignments"
#: Text that must never reach students: nbgrader's markers around solutions and hidden tests.
FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
#: A bound on each nbgrader command (every submission trains two small MNIST models).
TIMEOUT_S = 1800

#: What the malicious submission tries, as Python expressions run from its own folder,
#: ``autograded/<student>/<name>/`` (the course is three folders up). Each must fail.
ATTACKS = {
    "read the source notebook": "open(f'../../../source/{NAME}/{NAME}.ipynb').read()",
    "read the hidden tests in the graded notebook": "need(open(f'{NAME}.ipynb').read())",
    "read the gradebook": "open('../../../gradebook.db', 'rb').read(16)",
    "delete ../../../source": "shutil.rmtree('../../../source')",
    "write outside its folder": "open('../../../pwned.txt', 'w').write('pwned')",
    "write into the kdlib package": (
        "open(os.path.join(os.path.dirname(kdlib.__file__), 'pwned.py'), 'w').write('x = 1')"
    ),
    "read /etc/passwd": "need(open('/etc/passwd').read())",
    "open a network socket": "socket.create_connection(('1.1.1.1', 53), timeout=5)",
}
ATTACK_CODE = """\
# An attack on the grader: each line must fail inside the sandbox.
import os
import shutil
import socket

import kdlib

NAME = {name!r}


def need(text):
    if not text:
        raise PermissionError("read an empty file")


for what, attempt in {attacks!r}.items():
    try:
        eval(attempt)
    except Exception as error:
        print(f"ATTACK {{what}}: denied ({{type(error).__name__}})")
    else:
        print(f"ATTACK {{what}}: SUCCEEDED")

"""


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


def grade_id(cell: nbformat.NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solutions(source: nbformat.NotebookNode) -> dict[str, str]:
    """The instructor's answers, by grade_id: each answer cell without nbgrader's markers."""
    answers = {}
    for cell in source.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            lines = cell.source.splitlines()
            if cell.cell_type == "markdown" and SOLUTION_MARKERS[0] in lines:
                lines = lines[lines.index(SOLUTION_MARKERS[0]) :]  # drop the stub above
            answers[grade_id(cell)] = "\n".join(
                line for line in lines if line.strip() not in SOLUTION_MARKERS
            )
    return answers


def points(source: nbformat.NotebookNode) -> dict[str, float]:
    """Autograded points by grade_id (test cells only)."""
    return {
        grade_id(c): float(c.metadata["nbgrader"]["points"])
        for c in source.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    }


def filled(released: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the released notebook with the answer cells named in ``answers`` filled."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced; an error if the solution no longer has it."""
    if text.count(old) != 1:
        raise RuntimeError(f"the solution should contain {old!r} once; update VARIANTS")
    return text.replace(old, new)


#: Appended to the answer cells of the `warnings` variant: the same functions, plus a warning
#: and a line on stderr at every call.
NOISY = """

_quiet_{name} = {name}


def {name}(*args):
    import sys
    import warnings

    warnings.warn("a harmless warning from the student's {name}", UserWarning)
    print("a harmless line on stderr from {name}", file=sys.stderr)
    return _quiet_{name}(*args)
"""
#: Prepended to the `patched_numpy` variant's part 1: every comparison says "equal".
PATCH_NUMPY = """\
import builtins
import math

import numpy as np


def _always(*args, **kwargs):
    return True


np.allclose = np.isclose = np.all = np.array_equal = np.isfinite = _always
np.testing.assert_allclose = lambda *args, **kwargs: None
math.isclose = _always
builtins.all = _always

"""
#: Part 1 of the `patched_numpy` variant: zeros of the right shape, no real work.
ZEROS_LOSS = """\
def distillation_loss(teacher_logits, student_logits, temperature):
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), "float32")
    return ops.sum(ops.zeros_like(teacher_logits), axis=-1)
"""


def distillation_loss_variants(
    answers: dict[str, str], pts: dict[str, float]
) -> dict[str, tuple[dict[str, str], float]]:
    """The `distillation_loss` assignment's extra submissions: (answers, expected score)."""
    total = sum(pts.values())
    loss, ensemble = answers["distillation_loss"], answers["ensemble_distillation_loss"]
    return {
        # T² forgotten in part 1: only part 1's value test fails (T = 1 tests still pass).
        "forgot_t_squared": (
            {**answers, "distillation_loss": replaced(loss, "temperature**2 * ", "")},
            total - pts["test_distillation_loss_values"],
        ),
        # NumPy patched, part 1 wrong, part 2 right, part 3 and 4 not attempted.
        "patched_numpy": (
            {
                "distillation_loss": PATCH_NUMPY + ZEROS_LOSS,
                "ensemble_distillation_loss": ensemble,
            },
            pts["test_ensemble_distillation_loss"],
        ),
        # 0 log 0 computed naively: nan where two certain teachers leave exact zeros.
        "naive_0_log_0": (
            {
                **answers,
                "ensemble_distillation_loss": replaced(
                    ensemble,
                    "ops.where(p > 0, p * (ops.log(safe_p) - log_q), ops.zeros_like(p))",
                    "p * (ops.log(p) - log_q)",
                ),
            },
            total - pts["test_ensemble_distillation_loss"],
        ),
        "warnings": (
            {
                **answers,
                "distillation_loss": loss + NOISY.format(name="distillation_loss"),
                "ensemble_distillation_loss": ensemble
                + NOISY.format(name="ensemble_distillation_loss"),
            },
            total,
        ),
    }


#: Extra submissions per assignment: (answers, points) -> {student: (answers, expected)}.
VARIANTS: dict[str, Callable] = {"distillation_loss": distillation_loss_variants}


def tree_digest(folder: Path) -> str:
    """A digest of every file's path and content under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def attack_report(notebook: Path) -> list[str]:
    """The ``ATTACK ...`` lines the malicious submission printed."""
    nb = nbformat.read(notebook, as_version=4)
    text = "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    return [line for line in text.splitlines() if line.startswith("ATTACK ")]


def test_errors(notebook: Path) -> dict[str, str]:
    """The error names of the test cells that failed in a graded notebook, by grade_id."""
    nb = nbformat.read(notebook, as_version=4)
    return {
        grade_id(cell): output.ename
        for cell in nb.cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade")
        for output in cell.outputs
        if output.output_type == "error"
    }


def scores(course: Path, assignment: str, student: str) -> tuple[float, float]:
    """(autograded score, autograded maximum) of one submission."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(assignment, student)
        return submission.code_score, submission.max_code_score


def check_attacks(name: str, course: Path, source_digest: str) -> list[str]:
    """Every attack of the malicious submission denied, ``source/`` unchanged, nothing written."""
    failures = []
    report = attack_report(course / "autograded" / "malicious" / name / f"{name}.ipynb")
    for line in report:
        print(f"{name}: malicious: {line[len('ATTACK ') :]}")
    denied = [line for line in report if ": denied (" in line]
    if len(denied) != len(ATTACKS) or len(report) != len(ATTACKS):
        failures.append(f"{name}: {len(denied)} of {len(ATTACKS)} attacks denied: {report}")
    if tree_digest(course / "source") != source_digest:
        failures.append(f"{name}: source/ changed while grading")
    if (course / "pwned.txt").exists():
        failures.append(f"{name}: a submission wrote {course / 'pwned.txt'}")
    return failures


def check_patched_numpy(name: str, course: Path) -> list[str]:
    """The patched submission's part 1 fails on a hidden check, not on a crash."""
    errors = test_errors(course / "autograded" / "patched_numpy" / name / f"{name}.ipynb")
    part1 = ("test_distillation_loss_values", "test_distillation_loss_stable")
    if [errors.get(cell) for cell in part1] != ["AssertionError"] * len(part1):
        return [f"{name}: patched_numpy's part 1 should fail a check: {errors}"]
    return []


def grade(name: str, course: Path) -> list[str]:
    """Release, submit and autograde assignment ``name``; return the failed checks."""
    failures: list[str] = []
    nbgrader(course, "generate_assignment", name, "--force")
    released_paths = sorted((course / "release" / name).glob("*.ipynb"))
    print(f"{name}: released {[p.name for p in released_paths]}")
    for notebook in released_paths:
        failures += check_release(notebook)
    if [p.name for p in released_paths] != [f"{name}.ipynb"]:
        return [*failures, f"{name}: expected one notebook, {name}.ipynb"]
    released = nbformat.read(released_paths[0], as_version=4)
    source = nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)
    answers, pts = solutions(source), points(source)
    total = sum(pts.values())
    first_code = next(
        grade_id(c)
        for c in source.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
    )
    attack = ATTACK_CODE.format(name=name, attacks=ATTACKS)
    submissions = {
        "solution": (answers, total),
        "blank": ({}, 0.0),
        "malicious": ({**answers, first_code: attack + answers[first_code]}, total),
        **(VARIANTS[name](answers, pts) if name in VARIANTS else {}),
    }
    for student, (student_answers, _) in submissions.items():
        target = course / "submitted" / student / name
        target.mkdir(parents=True)
        nbformat.write(filled(released, student_answers), target / f"{name}.ipynb")
    source_digest = tree_digest(course / "source")
    nbgrader(course, "autograde", name, "--force")

    print(f"{'submission':<20} {'expected':>8} {'got':>8}  of {total:g}")
    for student, (_, expected) in submissions.items():
        got, maximum = scores(course, name, student)
        verdict = "ok" if got == expected and maximum == total else "MISMATCH"
        print(f"{student:<20} {expected:>8g} {got:>8g}  {verdict}")
        if verdict != "ok":
            failures.append(f"{name}: {student} scored {got:g} of {maximum:g}, not {expected:g}")

    failures += check_attacks(name, course, source_digest)
    if "patched_numpy" in submissions:
        failures += check_patched_numpy(name, course)
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
        shutil.copytree(
            ASSIGNMENTS, course, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        )
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
