"""The nbgrader homework in assignments/: its structure, without running the grader.

``make assignments`` (CI) releases the assignment and autogrades two submissions; these tests
catch the mistakes that make grading meaningless before that slow step: a test cell without
points, hidden tests missing, a solution outside its markers, a stale Colab set-up cell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Deferred, lazy_import, load_script

nbformat = lazy_import("nbformat")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "assignments" / "source").glob("*/*.ipynb"))


def _grades(nb: nbformat.NotebookNode) -> list[dict]:
    return [
        c.metadata["nbgrader"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
    ]


def test_there_is_an_assignment():
    assert SOURCES, "assignments/source/<name>/<name>.ipynb is missing"


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_assignment_cells_are_graded_and_hidden_tests_exist(path):
    nb = nbformat.read(path, as_version=4)
    grades = _grades(nb)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}"
    assert all(g["points"] > 0 for g in grades)
    autograded = [
        c
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    ]
    manual = [
        c
        for c in nb.cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")
    ]
    assert autograded and manual, "needs autograded tests and a manually graded answer"
    assert any("### BEGIN HIDDEN TESTS" in c.source for c in autograded)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if "### BEGIN SOLUTION" in cell.source:
            assert meta.get("solution"), f"solution markers in a non-answer cell of {path.name}"


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_assignment_starts_with_the_course_set_up_cell(path):
    sync = load_script("sync_notebooks")
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code"
    assert first.source == sync.setup_source(sync.repository_url())
    assert sync.synced(path, sync.repository_url()) == path.read_text(encoding="utf-8"), (
        f"{path.name}: the set-up cell differs from the notebooks'; run "
        "`python scripts/sync_notebooks.py`"
    )


# --- Each test cell stands alone (issue 22.3) and its hidden checks trust no rebindable name.


def _test_cells(path: Path) -> list:
    nb = nbformat.read(path, as_version=4)
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    ]


def _private_names(source: str) -> tuple[set[str], set[str]]:
    """(names starting with `_` that the cell reads, those it defines)."""
    import ast

    used, defined = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return used, defined


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_each_test_cell_defines_what_it_uses(path):
    """A test cell that used a helper from another cell would fail with a NameError when the
    other part is wrong: one mistake would cost points in two parts."""
    for cell in _test_cells(path):
        used, defined = _private_names(cell.source)
        assert used <= defined, (
            f"{cell.metadata['nbgrader']['grade_id']} uses {sorted(used - defined)}, defined in "
            "another cell: give each test cell its own references"
        )


def test_private_names_sees_a_borrowed_helper():
    used, defined = _private_names("def _ok(x):\n    return x\n_ok(_reference(1))\n")
    assert used - defined == {"_reference"}


#: What a hidden check must not call: the student's code can rebind all of these (the
#: builtins included: a `zip` that drops items would shorten a reference).
REBINDABLE = (
    r"allclose|isclose|np\.all\(|isfinite|\bmath\.|np\.mean"
    r"|(?<![\w.])(abs|sum|max|min|float|int|len|zip|range|enumerate|sorted|round)\("
)


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_hidden_checks_use_only_float_arithmetic(path):
    hidden = [
        c.source.split("### BEGIN HIDDEN TESTS", 1)[1]
        for c in _test_cells(path)
        if "### BEGIN HIDDEN TESTS" in c.source
    ]
    assert hidden and all("### END HIDDEN TESTS" in h for h in hidden)
    for block in hidden:
        used = [m.group(0) for m in re.finditer(REBINDABLE, block)]
        assert not used, f"a hidden check relies on {used}, which a submission can rebind"


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_every_test_cell_has_a_hidden_check_and_captures_warnings(path):
    """Every graded cell ends with hidden checks that a patched NumPy cannot pass, and calls
    the student's functions through `_run`, which shows warnings and stderr instead of
    letting them zero the cell."""
    for cell in _test_cells(path):
        name = cell.metadata["nbgrader"]["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{name} has no hidden checks"
        assert "def _run(" in cell.source and "redirect_stderr" in cell.source, name


# --- The grading sandbox (issue 22.19): assignments/sandbox.py, tested directly.

sandbox = Deferred(lambda: load_script("sandbox", folder="assignments"))
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install bubblewrap; .ci/run installs it)",
)

PROBE = r"""
import os, socket, sys
outside, own = sys.argv[1], sys.argv[2]
def attempt(name, action):
    try:
        action()
        print(name, "ALLOWED")
    except Exception as error:
        print(name, "denied", type(error).__name__)
attempt("read", lambda: open(os.path.join(outside, "secret.txt")).read())
attempt("delete", lambda: os.remove(os.path.join(outside, "keep.txt")))
attempt("write", lambda: open(os.path.join(outside, "new.txt"), "w").write("x"))
attempt("write-parent", lambda: open(os.path.join(own, "..", "new.txt"), "w").write("x"))
attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=5))
attempt("home", lambda: open(os.path.join(os.environ["HOME"], "h.txt"), "w").write("x"))
print("hidden", repr(open(os.path.join(own, "hidden.ipynb")).read()))
print("secret-env", os.environ.get("KD_TEST_SECRET"))
open(os.path.join(own, "result.txt"), "w").write("written inside")
"""


@needs_bwrap
def test_sandbox_denies_reading_deleting_writing_outside_and_the_network(tmp_path):
    outside, own = tmp_path / "outside", tmp_path / "course" / "autograded" / "student"
    outside.mkdir()
    own.mkdir(parents=True)
    (outside / "secret.txt").write_text("the hidden tests")
    (outside / "keep.txt").write_text("keep me")
    (own / "hidden.ipynb").write_text("the notebook with hidden tests")
    cmd = sandbox.bwrap_command(
        [sys.executable, "-c", PROBE, str(outside), str(own)],
        own,
        env={"KD_TEST_SECRET": "token", "PATH": "/usr/bin"},
        read_only=sandbox.python_paths(),
        hidden=[own / "hidden.ipynb"],
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    for action in ("read", "delete", "write", "write-parent", "network"):
        assert said[action].startswith("denied"), (action, said[action])
    assert said["home"] == "ALLOWED"  # a private home, gone with the sandbox
    assert said["hidden"] == "''" and said["secret-env"] == "None"
    assert (outside / "keep.txt").read_text() == "keep me"
    assert not (outside / "new.txt").exists() and not (own.parent / "new.txt").exists()
    assert (own / "result.txt").read_text() == "written inside"
    assert (own / "hidden.ipynb").read_text() == "the notebook with hidden tests"


def test_grading_config_runs_kernels_in_the_sandbox():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "assignments")).load_config()
    steps = config.Autograde.autograde_preprocessors
    assert steps[0].__name__ == "SandboxedExecute"
    assert steps[0].__init__.__module__ == "kd_course_sandbox"
    assert [s.__name__ for s in steps[1:]] == [
        "IgnorePattern", "ClearMetadataPreprocessor", "LimitOutput", "SaveAutoGrades",
        "AssignLatePenalties", "CheckCellMetadata",
    ]  # fmt: skip


def test_grading_submissions_stay_in_step_with_the_solution():
    """The submissions `make assignments` builds come from the current solution: each
    variant changes what it claims to (a missing T², patched NumPy, warnings)."""
    grader = load_script("grade_assignments")
    source = nbformat.read(SOURCES[0], as_version=4)
    answers, pts = grader.solutions(source), grader.points(source)
    assert all("### BEGIN SOLUTION" not in a for a in answers.values())
    variants = grader.distillation_loss_variants(answers, pts)
    assert "temperature**2" not in variants["forgot_t_squared"][0]["distillation_loss"]
    assert variants["forgot_t_squared"][1] == sum(pts.values()) - 3
    assert variants["patched_numpy"][1] == pts["test_ensemble_distillation_loss"]
    assert "warnings.warn" in variants["warnings"][0]["ensemble_distillation_loss"]
    assert "ops.log(p) - log_q" in variants["naive_0_log_0"][0]["ensemble_distillation_loss"]


def test_grading_without_bubblewrap_stops_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    module = load_script("sandbox", folder="assignments")
    monkeypatch.setattr(module, "_PROBED", [])
    with pytest.raises(RuntimeError, match=r"apt-get install bubblewrap"):
        module.probe()
