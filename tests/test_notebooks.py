"""The committed notebooks: names, the synced Colab header, structure, checked cells, outputs.

Also unit tests of ``scripts/sync_notebooks.py`` (the one source of the header).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import lazy_import, lazy_script, load_script

nbformat = lazy_import("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^\d{2}_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
REQUIRED_HEADINGS = ("Goals", "Setup", "Summary", "Exercises")
MIN_CHECKED_CELLS = 5
# nbval and nbclient let a cell with this tag raise (notebook 07 shows a program's error).
RAISES_TAG = "raises-exception"


sync = lazy_script("sync_notebooks")
notebook_params = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb files"


@notebook_params
def test_name_is_numbered_snake_case(path):
    assert NAME.match(path.name), f"{path.name} should look like NN_snake_case.ipynb"


@notebook_params
def test_header_is_what_the_sync_script_writes(path):
    nb = _read(path)
    expected = sync.header_cells(path, sync.repository_url())
    for cell, wanted in zip(nb.cells[: len(expected)], expected, strict=True):
        assert cell.cell_type == wanted.cell_type
        assert cell.source == wanted.source, (
            f"{path.name}: header out of date; run `python scripts/sync_notebooks.py`"
        )
        assert cell.metadata.get("tags") == wanted.metadata["tags"]
    assert sum(sync.HEADER_TAG in c.metadata.get("tags", []) for c in nb.cells) == 2
    assert sync.synced(path, sync.repository_url()) == path.read_text(encoding="utf-8")


@notebook_params
def test_structure_has_the_required_headings_in_order(path):
    headings = [
        line.lstrip("#").strip()
        for cell in _read(path).cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if re.match(r"^#{1,3} ", line)
    ]
    positions = []
    for required in REQUIRED_HEADINGS:
        matches = [i for i, h in enumerate(headings) if h == required]
        assert matches, f"{path.name} has no '## {required}' heading"
        positions.append(matches[0])
    assert positions == sorted(positions), f"{path.name}: headings out of order: {headings}"


@notebook_params
def test_has_enough_checked_cells(path):
    checked = [
        c for c in _read(path).cells if c.cell_type == "code" and c.source.startswith(CHECK_MARK)
    ]
    assert len(checked) >= MIN_CHECKED_CELLS, (
        f"{path.name} has {len(checked)} cells marked {CHECK_MARK}, needs {MIN_CHECKED_CELLS}"
    )
    for cell in checked:
        assert cell.outputs, f"{path.name}: a checked cell has no committed output"
        for out in cell.outputs:
            text_only = (out.output_type == "stream" and out.name == "stdout") or (
                out.output_type == "execute_result" and set(out.data) == {"text/plain"}
            )
            assert text_only, (
                f"{path.name}: a checked cell should print text only (no stderr, warnings or "
                f"plots), got {out.output_type} {out.get('name', '')}:\n{cell.source[:200]}"
            )


@notebook_params
def test_committed_with_outputs_of_a_run(path):
    code = [c for c in _read(path).cells if c.cell_type == "code"]
    not_run = [c.source.splitlines()[0] for c in code if c.execution_count is None]
    assert not not_run, f"{path.name}: cells never run (use `make notebooks`): {not_run}"
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), f"{path.name} was not run top to bottom: {counts}"
    errors = [
        o
        for c in code
        if RAISES_TAG not in c.metadata.get("tags", [])
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors, f"{path.name} was committed with an error output"
    for cell in code:  # a cell that shows an error on purpose must really show it
        if RAISES_TAG in cell.metadata.get("tags", []):
            assert any(o.output_type == "error" for o in cell.outputs), (
                f"{path.name}: a cell tagged {RAISES_TAG!r} has no error output:\n"
                f"{cell.source[:200]}"
            )
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} has no plots in its committed outputs"


# -------------------------------------------------------------- the sync script itself
def test_repository_url_comes_from_pyproject():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        url = tomllib.load(f)["project"]["urls"]["Repository"]
    assert sync.repository_url() == url.rstrip("/")


def test_badge_links_to_the_notebook_in_colab():
    badge, _ = sync.header_cells(Path("notebooks/07_some_topic.ipynb"), "https://github.com/o/r")
    assert badge.cell_type == "markdown"
    assert badge.source == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/o/r/blob/main/notebooks/07_some_topic.ipynb)"
    )


def test_setup_cell_is_identical_for_every_notebook():
    url = "https://github.com/o/r"
    a = sync.header_cells(Path("01_a.ipynb"), url, "1.2.3")[1]
    b = sync.header_cells(Path("02_b.ipynb"), url, "1.2.3")[1]
    assert a.cell_type == "code" and a.source == b.source
    assert 'KDLIB_VERSION = "1.2.3"\n' in a.source
    assert 'KDLIB_PIP_SPEC = "kdlib @ git+https://github.com/o/r@v1.2.3"\n' in a.source


def _notebook(tmp_path: Path, name: str = "05_demo_topic.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 05 · Demo"),
        nbformat.v4.new_code_cell("print(1)"),
    ]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_sync_adds_the_header_once_and_is_idempotent(tmp_path):
    path = _notebook(tmp_path)
    url = "https://github.com/o/r"
    first = sync.synced(path, url)
    path.write_text(first, encoding="utf-8")
    second = sync.synced(path, url)
    assert second == first
    cells = nbformat.reads(first, as_version=4).cells
    assert [c.id for c in cells[:2]] == ["colab-badge", "colab-setup"]
    assert cells[2].source == "# 05 · Demo" and cells[3].source == "print(1)"
    assert len(cells) == 4


def test_sync_keeps_outputs_of_a_run_header_and_replaces_a_stale_one(tmp_path):
    path = _notebook(tmp_path)
    path.write_text(sync.synced(path, "https://github.com/o/r"), encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].execution_count = 1
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
    nbformat.write(nb, path)
    assert sync.synced(path, "https://github.com/o/r") == path.read_text(encoding="utf-8")
    # A new repository URL rewrites both cells, still only one header.
    moved = nbformat.reads(sync.synced(path, "https://github.com/new/place"), as_version=4)
    assert "colab.research.google.com/github/new/place/" in moved.cells[0].source
    assert "git+https://github.com/new/place@v" in moved.cells[1].source
    # The old set-up cell ran without output, as the new one does outside Colab: the count
    # stays, so the notebook still reads as one run without running it again.
    assert moved.cells[1].execution_count == 1 and moved.cells[1].outputs == []
    assert len(moved.cells) == 4
    # A set-up cell that printed something (it ran in Colab) loses its count and outputs.
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ready\n")]
    nbformat.write(nb, path)
    moved = nbformat.reads(sync.synced(path, "https://github.com/new/place"), as_version=4)
    assert moved.cells[1].execution_count is None and moved.cells[1].outputs == []


def test_sync_main_check_mode(tmp_path, monkeypatch, capsys):
    path = _notebook(tmp_path)
    assert sync.main(["--check", str(path)]) == 1
    assert sync.main([str(path)]) == 0
    assert sync.main(["--check", str(path)]) == 0
    assert sync.main([str(path)]) == 0
    assert "updated the header" in capsys.readouterr().out


@pytest.mark.parametrize(
    "url", ["https://gitlab.com/o/r", "git@github.com:o/r.git", "https://github.com/o"]
)
def test_non_github_repository_url_is_refused(tmp_path, url):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\n[project.urls]\nRepository = "{url}"\n')
    with pytest.raises(SystemExit, match="not a GitHub URL"):
        sync.repository_url(pyproject)


def test_missing_repository_url_is_explained(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n')
    with pytest.raises(SystemExit, match=r"no \[project.urls\] Repository"):
        sync.repository_url(pyproject)


def test_sync_gives_older_notebooks_cell_ids(tmp_path):
    path = tmp_path / "09_old_format.ipynb"
    path.write_text(
        '{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 09"]}], '
        '"metadata": {}, "nbformat": 4, "nbformat_minor": 4}',
        encoding="utf-8",
    )
    text = sync.synced(path, "https://github.com/o/r")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells][:2] == ["colab-badge", "colab-setup"]
    assert nb.cells[2].id and nb.cells[2].source == "# 09"


def test_the_notebook_runner_script_imports():
    """``make notebooks`` runs scripts/run_notebooks.py; nothing else imports it in the tests."""
    assert callable(load_script("run_notebooks").main)
