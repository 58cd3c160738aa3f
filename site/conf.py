"""Sphinx configuration of the course website (``make site``; ``scripts/build_site.py``).

The sources are assembled by ``scripts/build_site.py`` in ``build/site-src``; this folder
holds only the configuration. Notebooks are rendered with the outputs they were committed
with (never executed); MathJax is served from the site itself (``build/site-vendor``).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REPOSITORY = _PROJECT["urls"]["Repository"].rstrip("/")

project = "Knowledge distillation, explained and runnable"
author = "The kd-course authors"
release = _PROJECT["version"]
copyright = "the kd-course authors, MIT licence"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# Notebooks: the committed outputs, never executed.
nb_execution_mode = "off"
# The widgets' live views need a kernel; the notebooks carry a static picture of each
# widget's first state beside the view, and the site shows that picture. No widget
# JavaScript from a CDN either.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax from the site (fetched by scripts/build_site.py), not from a CDN. A relative
# mathjax_path is relative to _static.
html_static_path = [str(ROOT / "build" / "site-vendor")]
mathjax_path = "mathjax/tex-mml-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "Knowledge distillation"
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
}
# Without a default, a first visit logs "Got invalid theme mode" as a console error.
html_context = {"default_mode": "light"}
html_last_updated_fmt = None
html_show_sphinx = False

# The API reference (scripts/build_site.py writes its pages from kdlib's __all__).
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# A method that Distiller overrides without a docstring of its own would show Keras's
# docstring, which is Markdown, not reStructuredText.
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# Parameter and return types in NumPy docstrings are prose ("array-like, shape (n,)"), shown
# as written rather than parsed into cross-references.
napoleon_use_param = False
napoleon_use_rtype = False

# A broken cross-reference fails the build (-W -n): every kdlib name a docstring mentions
# must exist. Names of the standard library and of other packages cannot be resolved offline
# (intersphinx would download their inventories), so references into exactly these are let
# through.
nitpicky = True
ELSEWHERE = (
    *("collections", "os", "pathlib", "typing", "t"),  # t: `import typing as t`
    *("keras", "numpy", "np", "tf", "tensorflow", "matplotlib", "ipywidgets", "scipy"),
)
nitpick_ignore_regex = [(r"py:.*", rf"({'|'.join(ELSEWHERE)})\..+")]


_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _kdlib_object(target: str, module: str | None, cls: str | None) -> bool:
    """Whether ``target``, read as Sphinx does (as written, then within the current module
    and class), names a real kdlib module or object: an internal one, since the public ones
    are documented and resolve before this is asked."""
    candidates = [target]
    if module:
        candidates += [f"{module}.{target}"] + ([f"{module}.{cls}.{target}"] if cls else [])
        # A method named in a class's summary line, shown in its module's table.
        found = importlib.import_module(module) if module.startswith("kdlib") else None
        candidates += [
            f"{module}.{name}.{target}"
            for name, value in vars(found or object).items()
            if isinstance(value, type) and hasattr(value, target)
        ]
        # A helper beside a function that the current (public) module re-exports from one of
        # its private submodules.
        candidates += [
            f"{name}.{target}"
            for name in list(sys.modules)
            if name.startswith(f"{module}.") and hasattr(sys.modules[name], target)
        ]
    for name in candidates:
        parts = name.split(".")
        if parts[0] != "kdlib":
            continue
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return True
    return False


def _unresolved_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Show as plain code, without a link, a Python reference that is

    - prose, not a name: a NumPy-docstring type such as ``{"auto", 0, 1}`` or a
      ``tuple[float, float]`` annotation split by the signature parser;
    - an internal kdlib name (a module or helper that is not in the public reference).

    A name that exists nowhere still fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not _DOTTED_NAME.match(target):
        return contnode
    if _kdlib_object(target, node.get("py:module"), node.get("py:class")):
        return contnode
    return None


def _plain_data_docstrings(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Before napoleon: a constant's docstring is its ``#:`` comment, never the docstring of
    its type (a dict's "dict() -> new empty dictionary"); and its first line is a sentence,
    which napoleon would otherwise split at a colon into "type: description"."""
    if what not in ("data", "attribute"):
        return
    if lines and "\n".join(lines).strip() == (type(obj).__doc__ or "").strip():
        lines.clear()
    if lines and ":" in lines[0]:
        lines.insert(0, "")


def setup(app: Any) -> None:
    app.connect("missing-reference", _unresolved_reference)
    app.connect("autodoc-process-docstring", _plain_data_docstrings, priority=400)
