"""The nbgrader homework in assignments/: its structure, without running the grader.

``make assignments`` (CI) releases the assignment and autogrades two submissions; these tests
catch the mistakes that make grading meaningless before that slow step: a test cell without
points, hidden tests missing, a solution outside its markers, a stale Colab set-up cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import lazy_import, load_script

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
