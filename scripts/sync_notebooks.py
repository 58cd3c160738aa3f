#!/usr/bin/env python
"""Write the "Open in Colab" badge and the Colab set-up cell at the top of every notebook.

One source of truth: the repository URL in ``pyproject.toml`` (``[project.urls]
Repository``). Every ``notebooks/NN_*.ipynb`` starts with two cells tagged ``kdlib-header``:

1. a Markdown cell with the badge that opens this notebook in Colab;
2. a code cell, identical in every notebook, that pip-installs ``kdlib`` from the repository
   when ``google.colab`` is importable, then starts Keras through
   ``kdlib.runtime.start_quietly()`` (no TensorFlow C++ start-up lines in a stderr box).

The script is idempotent: a notebook whose header is already right is not rewritten (its
outputs and execution counts are kept). ``--check`` changes nothing and exits with 1 if a
notebook would change.

Usage::

    python scripts/sync_notebooks.py                 # every notebooks/NN_*.ipynb
    python scripts/sync_notebooks.py notebooks/01_*.ipynb
    python scripts/sync_notebooks.py --check
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
HEADER_TAG = "kdlib-header"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?$")


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The ``[project.urls] Repository`` entry of ``pyproject.toml``, without a trailing /."""
    with open(pyproject, "rb") as f:
        config = tomllib.load(f)
    try:
        url = config["project"]["urls"]["Repository"]
    except KeyError:
        raise SystemExit(
            f"{pyproject} has no [project.urls] Repository entry; add e.g. "
            'Repository = "https://github.com/OWNER/REPO" so the Colab badge can link to it.'
        ) from None
    if not _GITHUB.match(url):
        raise SystemExit(
            f"[project.urls] Repository = {url!r} in {pyproject} is not a GitHub URL of the "
            "form https://github.com/OWNER/REPO, which Colab needs to open the notebooks."
        )
    return url.rstrip("/").removesuffix(".git")


def colab_url(repo_url: str, notebook: Path) -> str:
    """The Colab address that opens ``notebooks/<name>`` from the repository's main branch."""
    match = _GITHUB.match(repo_url)
    if match is None:
        raise ValueError(f"not a GitHub repository URL: {repo_url!r}")
    return (
        f"https://colab.research.google.com/github/{match['owner']}/{match['repo']}"
        f"/blob/{BRANCH}/notebooks/{notebook.name}"
    )


def setup_source(repo_url: str) -> str:
    """The set-up cell's code: the same text in every notebook."""
    return (
        "# Colab set-up (written by scripts/sync_notebooks.py, the same in every notebook).\n"
        "# In Google Colab this installs kdlib from the course repository; elsewhere it does\n"
        "# nothing, because `make lab` has already installed kdlib in .venv.\n"
        "try:\n"
        "    import google.colab  # noqa: F401\n"
        "\n"
        "    IN_COLAB = True\n"
        "except ImportError:\n"
        "    IN_COLAB = False\n"
        "\n"
        "if IN_COLAB:\n"
        f'    %pip install -q "kdlib @ git+{repo_url}"\n'
        "\n"
        "import kdlib.runtime\n"
        "\n"
        "kdlib.runtime.start_quietly()  # Keras and TensorFlow, minus TF's C++ start-up log lines"
    )


def header_cells(notebook: Path, repo_url: str) -> list[nbformat.NotebookNode]:
    """The badge cell and the set-up cell that belong at the top of ``notebook``."""
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(repo_url, notebook)})",
        id="colab-badge",
        metadata={"tags": [HEADER_TAG]},
    )
    setup = nbformat.v4.new_code_cell(
        setup_source(repo_url), id="colab-setup", metadata={"tags": [HEADER_TAG]}
    )
    return [badge, setup]


def _is_header(cell: nbformat.NotebookNode) -> bool:
    return HEADER_TAG in cell.get("metadata", {}).get("tags", [])


def _same(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Same header cell, ignoring what running it adds (outputs, counts, timing metadata)."""
    keys = ("cell_type", "id", "source")
    tags = [c.get("metadata", {}).get("tags") for c in (a, b)]
    return tags[0] == tags[1] and all(a.get(k) == b.get(k) for k in keys)


def synced(notebook: Path, repo_url: str) -> str:
    """The text ``notebook`` should have: its own cells below a fresh header."""
    original = nbformat.read(notebook, as_version=4)
    wanted = header_cells(notebook, repo_url)
    current = [c for c in original.cells if _is_header(c)]
    body = [c for c in original.cells if not _is_header(c)]
    at_top = original.cells[: len(wanted)]
    header = []
    for i, cell in enumerate(wanted):
        # Keep a header cell that is already right, with its outputs and execution count.
        keep = i < len(at_top) and len(current) == len(wanted) and _same(at_top[i], cell)
        header.append(at_top[i] if keep else cell)
    original.cells = header + body
    if original.nbformat_minor < 5:
        original.nbformat_minor = 5  # cell ids; give older notebooks stable ones
        taken = {c.get("id") for c in original.cells}
        for i, cell in enumerate(original.cells):
            if "id" not in cell:
                cell["id"] = next(
                    f"cell-{i}-{k}" for k in range(1000) if f"cell-{i}-{k}" not in taken
                )
    text = nbformat.writes(original)
    return text if text.endswith("\n") else text + "\n"


def notebooks(paths: list[str]) -> list[Path]:
    """The notebooks named on the command line, or every ``notebooks/NN_*.ipynb``."""
    if not paths:
        return sorted(NOTEBOOK_DIR.glob(NOTEBOOK_GLOB))
    found = [Path(p) for p in paths]
    missing = [str(p) for p in found if not p.is_file()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/NN_*.ipynb")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook would change"
    )
    args = parser.parse_args(argv)
    repo_url = repository_url()
    stale = []
    for path in notebooks(args.notebooks):
        text = synced(path, repo_url)
        if path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"updated the header of {path}")
    if args.check and stale:
        print(
            "out of date (run `python scripts/sync_notebooks.py`): " + ", ".join(map(str, stale))
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
