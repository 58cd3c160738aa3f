#!/usr/bin/env python
"""Build the course website (``make site``): static HTML from the committed notebooks.

Nothing is executed: the pages show the outputs the notebooks were committed with. Steps:

1. assemble the sources in ``build/site-src`` (regenerated on every build), keeping the
   repository's layout so that relative links keep working:

   - ``index.md``: the README's title, introduction and course sections (``LANDING``);
   - ``notebooks/NN_*.ipynb`` in order, the "Open in Colab" badge served from the site;
   - ``docs/*.md``;
   - ``assignments/<name>.ipynb``: the student's view of each nbgrader assignment, made by
     nbgrader's own preprocessors with the course's ``nbgrader_config.py`` (solutions replaced
     by stubs, hidden tests and outputs removed), checked like ``make assignments`` checks a
     release;
   - ``api/``: one page per public module of kdlib (``kdlib.__all__``, and the ``__all__`` of
     each module in ``kdlib.PUBLIC_MODULES``, read at build time), rendered from the
     docstrings by Sphinx autodoc.

   A relative link to a file that is not part of the site (``results/*.json``, the README)
   becomes a link to that file in the repository; a link to a file that does not exist is left
   as it is, so that Sphinx reports it and the build fails.
2. fetch MathJax (npm package ``mathjax``, pinned version and checksum) into
   ``build/site-vendor`` once, so that every page renders its math without a CDN;
3. run Sphinx (myst-nb, sphinx-book-theme; configuration in ``site/conf.py``) with ``-W
   --keep-going -n``: a warning (a broken cross-reference, a missing image) fails the build;
4. check the built assignment pages: no nbgrader marker and no line of a solution or of a
   hidden test in the HTML.

Usage::

    python scripts/build_site.py                  # into build/site
    python scripts/build_site.py --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import html
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from base64 import b64encode
from pathlib import Path, PurePosixPath
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "site"
BUILD = ROOT / "build"
SOURCE = BUILD / "site-src"
DOCTREES = BUILD / "site-doctrees"
VENDOR = BUILD / "site-vendor"
OUT = BUILD / "site"

#: README sections (``## `` headings) that make the landing page, after its introduction.
LANDING = ("Start", "Notebooks", "More")
#: The badge image the notebooks' first cell links to; the site serves its own copy.
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
#: MathJax from the npm registry, checked against the registry's published integrity.
MATHJAX_VERSION = "3.2.2"
MATHJAX_INTEGRITY = (
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/"
    "O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
)
#: What the site needs from the package: the combined TeX/MathML-to-HTML file, the
#: extensions and fonts it loads on demand, the menu and its accessibility parts.
MATHJAX_ENTRY = "tex-mml-chtml.js"  # site/conf.py's mathjax_path is mathjax/ + this
MATHJAX_PARTS = (
    "es5/tex-mml-chtml.js",
    "es5/input/",
    "es5/output/chtml/",
    "es5/a11y/",
    "es5/ui/",
    "es5/sre/",
    "LICENSE",
)
NPM_TIMEOUT_S = 300
#: nbgrader's markers: none may reach a page (scripts/grade_assignments.py checks releases).
FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def repository_url() -> str:
    """The repository's address, from ``[project.urls] Repository`` in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["urls"]["Repository"].rstrip("/")


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (creating folders) unless it already holds exactly that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Links and the landing page


def rewrite_links(text: str, origin: str, placed: dict[str, str], repo: str) -> str:
    """Point the relative links of ``text`` (from repository file ``origin``) into the site.

    ``placed`` maps repository paths to their paths in the site (``origin`` included). A link
    to a placed file is made relative to ``origin``'s place in the site; a link to another
    file of the repository (or a folder) goes to ``repo``; an absolute URL, an anchor on the
    same page or a target that does not exist stays as it is (Sphinx then reports it).
    """
    here = PurePosixPath(placed[origin]).parent

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match[0]
        path, _, fragment = target.partition("#")
        anchor = f"#{fragment}" if fragment else ""
        resolved = (ROOT / PurePosixPath(origin).parent / path).resolve()
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            return match[0]
        if rel in placed:
            new = _relative(PurePosixPath(placed[rel]), here) + anchor
        elif resolved.is_dir():
            new = f"{repo}/tree/main/{rel}{anchor}"
        elif resolved.is_file():
            new = f"{repo}/blob/main/{rel}{anchor}"
        else:
            return match[0]
        return f"{match['bang']}[{match['text']}]({new})"

    return _LINK.sub(replace, text)


def _relative(target: PurePosixPath, start: PurePosixPath) -> str:
    up = [part for part in start.parts if part not in ("", ".")]
    parts = list(target.parts)
    common = 0
    while common < min(len(up), len(parts) - 1) and up[common] == parts[common]:
        common += 1
    return "/".join([".."] * (len(up) - common) + parts[common:])


def readme_sections(text: str) -> tuple[str, dict[str, str]]:
    """(the part before the first ``## `` heading, ``{heading: section}``) of a README."""
    pieces = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    sections = {}
    for piece in pieces[1:]:
        heading = piece.splitlines()[0][3:].strip()
        sections[heading] = piece
    return pieces[0], sections


def landing_page(readme: str, sections: tuple[str, ...] = LANDING) -> str:
    """The README's introduction and its course ``sections``, in that order."""
    intro, found = readme_sections(readme)
    missing = [name for name in sections if name not in found]
    if missing:
        raise SystemExit(
            f"site: README.md has no section {missing!r} for the landing page; its sections "
            f"are {list(found)}. Update LANDING in scripts/build_site.py."
        )
    return intro.rstrip() + "\n\n" + "\n".join(found[name].rstrip() + "\n" for name in sections)


def toctree(caption: str, entries: list[str]) -> str:
    """A hidden MyST toctree: the site's navigation (the sidebar) in this order."""
    lines = "\n".join(entries)
    return f"\n```{{toctree}}\n:caption: {caption}\n:hidden:\n\n{lines}\n```\n"


# ---------------------------------------------------------------------------------------------
# Notebooks and the assignment


def site_notebook(path: Path, origin: str, placed: dict[str, str], repo: str) -> str:
    """A committed notebook for the site: links rewritten, the Colab badge from the site."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    depth = len(PurePosixPath(placed[origin]).parent.parts)
    badge = "/".join([".."] * depth + ["_static", "colab-badge.svg"])
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "google.colab" in "".join(cell["source"]):
            # The Colab set-up cell: on a page, folded behind "Show code cell source".
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            tags += [] if "hide-input" in tags else ["hide-input"]
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        source = rewrite_links(source.replace(COLAB_BADGE, badge), origin, placed, repo)
        cell["source"] = source.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def student_view(source: Path) -> Any:
    """The released notebook of an nbgrader assignment, made by nbgrader's preprocessors."""
    import nbformat
    from nbgrader.preprocessors import (
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
    )
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "assignments")).load_config()
    nb = nbformat.read(source, as_version=4)
    resources: dict[str, Any] = {}
    for step in (ClearSolutions, ClearHiddenTests, ClearMarkScheme, ClearOutput):
        nb, resources = step(config=config).preprocess(nb, resources)
    return nb


def solution_lines(source: Path, released: Any) -> list[str]:
    """Lines of the instructor's notebook that the release must not show: the solutions and
    hidden tests (longer than 20 characters, and not also in the release, like a docstring
    kept in the stub)."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    shown = {line.strip() for cell in released.cells for line in cell.source.splitlines()}
    secret: list[str] = []
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 20 and line.strip() not in shown:
                secret.append(line.strip())
    return secret


def page_text(page: Path) -> str:
    """The text a browser shows for an HTML page (tags removed, entities decoded)."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def check_student_pages(out: Path, secrets: dict[str, list[str]]) -> list[str]:
    """Problems of the built assignment pages: a marker, or a solution line, in the HTML."""
    problems = []
    for name, lines in secrets.items():
        page = out / "assignments" / f"{name}.html"
        if not page.is_file():
            problems.append(f"{page.relative_to(out)} was not built")
            continue
        text = page_text(page)
        problems += [f"{page.name} shows {marker!r}" for marker in FORBIDDEN if marker in text]
        problems += [
            f"{page.name} shows the solution line {line!r}" for line in lines if line in text
        ]
    return problems


# ---------------------------------------------------------------------------------------------
# The API reference


def public_api() -> dict[str, list[str]]:
    """``{module: names}``: the names in ``kdlib.__all__`` (``__version__`` aside), then each
    module of ``kdlib.PUBLIC_MODULES`` with the names in its ``__all__``, in that order. A name
    in an ``__all__`` that is itself a module is followed, not listed."""
    import kdlib

    api: dict[str, list[str]] = {}

    def visit(module: Any) -> None:
        if module.__name__ in api:
            return
        names = getattr(module, "__all__", None)
        if names is None:
            raise SystemExit(f"site: {module.__name__} has no __all__; list its public names")
        api[module.__name__] = []
        for name in names:
            value = getattr(module, name)
            if inspect.ismodule(value):
                visit(value)
            elif not (name.startswith("__") and name.endswith("__")):
                api[module.__name__].append(name)

    visit(kdlib)
    for name in getattr(kdlib, "PUBLIC_MODULES", ()):
        visit(importlib.import_module(f"kdlib.{name}"))
    return api


def _canonical(api: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """``{(module, name): full name}`` of where each public name is documented in full: in
    the module that defines it if that module is public, else in the first public module
    (other than ``kdlib`` itself) that lists it. Constants are documented where listed."""
    listed: dict[int, list[tuple[str, str]]] = {}
    for module_name, names in api.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                listed.setdefault(id(value), []).append((module_name, name))
    result = {}
    for module_name, names in api.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            places = listed.get(id(value), [(module_name, name)])
            defining = [p for p in places if p[0] == getattr(value, "__module__", None)]
            deeper = [p for p in places if p[0] != "kdlib"]
            home, home_name = (defining or deeper or places)[0]
            result[module_name, name] = f"{home}.{home_name}"
    return result


def _directive(value: Any) -> str:
    if inspect.isclass(value):
        kind = "exception" if issubclass(value, BaseException) else "class"
        return f"auto{kind}"
    if callable(value):
        return "autofunction"
    return "autodata"


def api_pages(api: dict[str, list[str]]) -> dict[str, str]:
    """``{file name: reStructuredText}``: an index, and a page per public module."""
    canonical = _canonical(api)
    pages = {}
    for module_name, names in api.items():
        module = importlib.import_module(module_name)
        lines = [module_name, "=" * len(module_name), "", f".. automodule:: {module_name}", ""]
        if names:
            lines += [".. rubric:: Public names", "", ".. autosummary::", "   :nosignatures:", ""]
            for name in names:
                full = canonical[module_name, name]
                # autosummary wants names of the current module without it.
                inside = full.startswith(f"{module_name}.")
                lines.append(
                    f"   {full.removeprefix(module_name + '.')}" if inside else f"   ~{full}"
                )
            lines.append("")
        for name in names:
            value = getattr(module, name)
            if canonical[module_name, name] != f"{module_name}.{name}":
                continue  # documented in full on its home page; the table links there
            lines += [f".. {_directive(value)}:: {module_name}.{name}"]
            if inspect.isclass(value):
                lines += ["   :members:", "   :show-inheritance:"]
            elif not callable(value):
                lines += ["   :no-value:"]
            lines.append("")
        pages[f"{module_name}.rst"] = "\n".join(lines)
    entries = "\n".join(f"   {name}" for name in api)
    pages["index.rst"] = (
        "API reference\n=============\n\n"
        "The public face of ``kdlib``: the names in ``kdlib.__all__`` and in the ``__all__`` of "
        "each module of ``kdlib.PUBLIC_MODULES``, the contract homework relies on. Every entry "
        "is generated from the docstring in the code.\n\n"
        f".. toctree::\n   :maxdepth: 1\n\n{entries}\n"
    )
    return pages


# ---------------------------------------------------------------------------------------------
# MathJax


def vendor_mathjax(vendor: Path = VENDOR) -> Path:
    """``vendor/mathjax`` with MathJax's files, fetched with npm once and checked."""
    target = vendor / "mathjax"
    stamp = target / ".version"
    entry = target / MATHJAX_ENTRY
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == MATHJAX_VERSION:
        if entry.is_file():
            return target
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "site: npm is missing; it fetches MathJax from the npm registry "
            "(Debian: apt-get install -y npm)."
        )
    vendor.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=vendor) as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", str(tmp)],
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=NPM_TIMEOUT_S,
        )
        tarball = tmp / f"mathjax-{MATHJAX_VERSION}.tgz"
        digest = "sha512-" + b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != MATHJAX_INTEGRITY:
            raise SystemExit(f"site: {tarball.name} has checksum {digest}, not the pinned one")
        unpacked = tmp / "mathjax"
        with tarfile.open(tarball) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.removeprefix("package/").startswith(MATHJAX_PARTS)
            ]
            for member in members:  # package/es5/x.js -> x.js: the site's _static/mathjax/
                member.name = member.name.removeprefix("package/").removeprefix("es5/")
            archive.extractall(unpacked, members=members, filter="data")
        (unpacked / ".version").write_text(MATHJAX_VERSION + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


# ---------------------------------------------------------------------------------------------
# Assembly and build


def assemble(source: Path = SOURCE) -> dict[str, list[str]]:
    """Write the site's sources into ``source``; return each assignment's secret lines."""
    repo = repository_url()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    docs = sorted((ROOT / "docs").glob("*.md"))
    assignments = sorted((ROOT / "assignments" / "source").glob("*/*.ipynb"))
    placed = {"README.md": "index.md"}
    placed |= {p.relative_to(ROOT).as_posix(): p.relative_to(ROOT).as_posix() for p in notebooks}
    placed |= {p.relative_to(ROOT).as_posix(): p.relative_to(ROOT).as_posix() for p in docs}
    placed |= {p.relative_to(ROOT).as_posix(): f"assignments/{p.name}" for p in assignments}

    if source.exists():
        shutil.rmtree(source)
    (source / "_static").mkdir(parents=True)
    shutil.copy2(CONF_DIR / "colab-badge.svg", source / "_static" / "colab-badge.svg")

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = rewrite_links(landing_page(readme), "README.md", placed, repo)
    index += toctree("Notebooks", [placed[p.relative_to(ROOT).as_posix()] for p in notebooks])
    index += toctree("Homework", [f"assignments/{p.stem}" for p in assignments])
    index += toctree("Guides", [p.relative_to(ROOT).with_suffix("").as_posix() for p in docs])
    index += toctree("Library", ["api/index"])
    write_if_changed(source / "index.md", index)

    # The README is not a page (the landing page holds its course part): from any other page,
    # a link to it goes to the repository.
    pages = {k: v for k, v in placed.items() if k != "README.md"}
    for path in notebooks:
        origin = path.relative_to(ROOT).as_posix()
        write_if_changed(source / origin, site_notebook(path, origin, pages, repo))
    for path in docs:
        origin = path.relative_to(ROOT).as_posix()
        text = rewrite_links(path.read_text(encoding="utf-8"), origin, pages, repo)
        write_if_changed(source / origin, text)

    import nbformat

    sys.path.insert(0, str(ROOT / "scripts"))
    from grade_assignments import check_release

    secrets = {}
    for path in assignments:
        origin = path.relative_to(ROOT).as_posix()
        released = student_view(path)
        target = source / placed[origin]
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(released, target)
        problems = check_release(target)
        if problems:
            raise SystemExit("site: the student view is not clean: " + "; ".join(problems))
        text = site_notebook(target, origin, pages, repo)
        write_if_changed(target, text)
        secrets[path.stem] = solution_lines(path, released)

    for name, text in api_pages(public_api()).items():
        write_if_changed(source / "api" / name, text)
    return secrets


def build(out: Path = OUT) -> int:
    """Assemble, fetch MathJax, run Sphinx, check the student pages; 0 when all passed."""
    from sphinx.cmd.build import build_main

    start = time.monotonic()
    secrets = assemble()
    assembled = time.monotonic()
    vendor_mathjax()
    fetched = time.monotonic()
    for folder in (out, DOCTREES):
        if folder.exists():
            shutil.rmtree(folder)
    status = build_main(
        ["-b", "html", "-c", str(CONF_DIR), "-d", str(DOCTREES), "-W", "--keep-going", "-n", "-q"]
        + [str(SOURCE), str(out)]
    )
    if status != 0:
        print("site: Sphinx failed (warnings above are errors)", file=sys.stderr)
        return status
    problems = check_student_pages(out, secrets)
    for problem in problems:
        print("site: FAILED:", problem, file=sys.stderr)
    pages = sum(1 for _ in out.rglob("*.html") if "_static" not in _.parts)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    now = time.monotonic()
    print(
        f"site: {pages} pages, {size / 1e6:.1f} MB in {out} ({now - start:.0f} s: sources "
        f"{assembled - start:.0f} s, MathJax {fetched - assembled:.0f} s, Sphinx "
        f"{now - fetched:.0f} s); open {out / 'index.html'}"
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    args = parser.parse_args(argv)
    return build(args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())
