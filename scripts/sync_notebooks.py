#!/usr/bin/env python
"""Write the "Open in Colab" badge and the Colab set-up cell at the top of every notebook.

One source of truth: ``pyproject.toml``, its ``[project.urls] Repository`` and its
``[project] version``. Every ``notebooks/NN_*.ipynb`` starts with two cells tagged
``kdlib-header``:

1. a Markdown cell with the badge that opens this notebook in Colab;
2. a code cell, identical in every notebook, that in Colab (``google.colab`` importable)
   pip-installs the kdlib release these notebooks belong to (``git+<Repository>@v<version>``),
   imports it, checks ``kdlib.__version__``, turns on Colab's custom widget manager when the
   installed ipywidgets is 8 or later, and raises an error that says what to do if any of this
   fails. Elsewhere it installs nothing and prints nothing. Everywhere it then starts Keras
   through ``kdlib.runtime.start_quietly()``, so TensorFlow's C++ start-up lines (which
   ``TF_CPP_MIN_LOG_LEVEL`` cannot silence) do not show as a stderr box.

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
_VERSION = re.compile(r"^\d+(\.\d+)*([a-z0-9.+-]*)$")
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


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The ``[project] version`` of ``pyproject.toml``: the kdlib release the notebooks need."""
    with open(pyproject, "rb") as f:
        config = tomllib.load(f)
    version = config.get("project", {}).get("version")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise SystemExit(
            f'{pyproject} needs a [project] version such as version = "0.1.0" (got '
            f"{version!r}); the Colab set-up cell installs the release tagged v<version>."
        )
    return version


def release_tag(version: str) -> str:
    """The git tag of a release: ``v`` and the version, e.g. ``v0.1.0``."""
    return f"v{version}"


def pip_spec(repo_url: str, ref: str) -> str:
    """The requirement the set-up cell gives pip: kdlib from ``repo_url`` at ``ref``."""
    return f"kdlib @ git+{repo_url}@{ref}"


def setup_source(repo_url: str, version: str | None = None, ref: str | None = None) -> str:
    """The set-up cell's code: the same text in every notebook.

    ``version`` defaults to ``pyproject.toml``'s, ``ref`` to its release tag. Only the
    Colab parity test (``scripts/colab_parity.py``) passes other values: a ``file://`` URL of
    the clone and the commit under test.
    """
    version = project_version() if version is None else version
    spec = pip_spec(repo_url, release_tag(version) if ref is None else ref)
    return f"""\
# Colab set-up (written by scripts/sync_notebooks.py, the same in every notebook).
# In Google Colab this installs kdlib {version}, the release these notebooks belong to, and
# stops with an explanation if that fails. Elsewhere it installs nothing: `make lab` has
# already installed kdlib in .venv.
import sys

KDLIB_VERSION = "{version}"
KDLIB_PIP_SPEC = "{spec}"

try:
    import google.colab  # noqa: F401

    IN_COLAB = True
except ImportError:
    IN_COLAB = False

if IN_COLAB:
    import importlib
    import importlib.metadata
    import subprocess

    try:
        installed = importlib.metadata.version("kdlib")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != KDLIB_VERSION:
        pip_run = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", KDLIB_PIP_SPEC],
            capture_output=True,
            text=True,
        )
        if pip_run.returncode != 0:
            pip_said = (pip_run.stdout + pip_run.stderr).strip()[-3000:]
            raise RuntimeError(
                f'Could not install kdlib {{KDLIB_VERSION}}: pip install "{{KDLIB_PIP_SPEC}}" '
                f"failed (exit status {{pip_run.returncode}}). pip said:\\n{{pip_said}}\\n\\n"
                "What to do: check that this runtime is connected, then run this cell again. "
                "If it fails again, Colab may have moved on: see 'Run it in Colab' in the "
                "course README."
            )
        importlib.invalidate_caches()
    try:
        import kdlib
    except ImportError as error:
        raise RuntimeError(
            f"pip installed kdlib {{KDLIB_VERSION}}, but it cannot be imported ({{error}}). "
            "What to do: Runtime > Restart session, then run this cell again."
        ) from error
    if kdlib.__version__ != KDLIB_VERSION:
        raise RuntimeError(
            f"kdlib {{kdlib.__version__}} is loaded, but this notebook needs kdlib "
            f"{{KDLIB_VERSION}}. What to do: Runtime > Restart session (another kdlib was "
            "imported earlier in this session), then run this cell again."
        )
    import ipywidgets

    if int(ipywidgets.__version__.split(".")[0]) >= 8:
        # Colab shows ipywidgets 8 only through its custom widget manager.
        from google.colab import output

        output.enable_custom_widget_manager()
    print(f"kdlib {{kdlib.__version__}} is ready (ipywidgets {{ipywidgets.__version__}}).")

import kdlib.runtime

kdlib.runtime.start_quietly()  # Keras without TensorFlow's C++ start-up lines (oneDNN, CUDA)"""


def header_cells(
    notebook: Path, repo_url: str, version: str | None = None
) -> list[nbformat.NotebookNode]:
    """The badge cell and the set-up cell that belong at the top of ``notebook``."""
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(repo_url, notebook)})",
        id="colab-badge",
        metadata={"tags": [HEADER_TAG]},
    )
    setup = nbformat.v4.new_code_cell(
        setup_source(repo_url, version), id="colab-setup", metadata={"tags": [HEADER_TAG]}
    )
    return [badge, setup]


def _is_header(cell: nbformat.NotebookNode) -> bool:
    return HEADER_TAG in cell.get("metadata", {}).get("tags", [])


def _same(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Same header cell, ignoring what running it adds (outputs, counts, timing metadata)."""
    keys = ("cell_type", "id", "source")
    tags = [c.get("metadata", {}).get("tags") for c in (a, b)]
    return tags[0] == tags[1] and all(a.get(k) == b.get(k) for k in keys)


def synced(notebook: Path, repo_url: str, version: str | None = None) -> str:
    """The text ``notebook`` should have: its own cells below a fresh header.

    A header cell that is already right keeps its outputs and execution count. A stale
    set-up cell that ran without output hands its execution count to the new one: outside
    Colab the set-up cell prints nothing, so the committed notebook still reads as one run
    from top to bottom without being run again.
    """
    original = nbformat.read(notebook, as_version=4)
    wanted = header_cells(notebook, repo_url, version)
    current = [c for c in original.cells if _is_header(c)]
    body = [c for c in original.cells if not _is_header(c)]
    at_top = original.cells[: len(wanted)]
    header = []
    for i, cell in enumerate(wanted):
        # Keep a header cell that is already right, with its outputs and execution count.
        in_place = i < len(at_top) and len(current) == len(wanted) and _is_header(at_top[i])
        if in_place and _same(at_top[i], cell):
            cell = at_top[i]
        elif in_place and cell.cell_type == "code" and at_top[i].get("cell_type") == "code":
            if not at_top[i].get("outputs"):
                cell.execution_count = at_top[i].get("execution_count")
        header.append(cell)
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
    version = project_version()
    stale = []
    for path in notebooks(args.notebooks):
        text = synced(path, repo_url, version)
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
