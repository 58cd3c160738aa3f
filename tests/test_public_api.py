"""kdlib's public API is a contract: the record ``tests/public_api.json`` is the API.

``scripts/public_api.py --write`` writes the record after a deliberate change (and
CHANGELOG.md says why); a name leaves the API only through a deprecation: its old path keeps
working for one minor release and warns (docs/stability.md).
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import warnings
from pathlib import Path

import pytest
from helpers import load_script

import kdlib
from kdlib._deprecated import MOVED

ROOT = Path(__file__).resolve().parents[1]
public_api = load_script("public_api")


def test_public_api_matches_its_record():
    record = json.loads((ROOT / "tests" / "public_api.json").read_text(encoding="utf-8"))
    current = json.loads(json.dumps(public_api.public_api()))  # tuples -> lists, as recorded
    changed = sorted(
        f"{module}.{name}"
        for module in record.keys() | current.keys()
        for name in {**record.get(module, {}), **current.get(module, {})}
        if record.get(module, {}).get(name) != current.get(module, {}).get(name)
    )
    assert not changed, (
        f"public API changed: {changed}; if on purpose, run `python scripts/public_api.py "
        "--write` and say why in CHANGELOG.md"
    )


def test_every_name_a_notebook_imports_from_kdlib_is_public():
    record = json.loads((ROOT / "tests" / "public_api.json").read_text(encoding="utf-8"))
    public = {f"kdlib.{name}" for name in kdlib.PUBLIC_MODULES} | {"kdlib"}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            lines = [line for line in source.splitlines() if not line.startswith(("%", "!"))]
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kdlib"):
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        assert full in public or alias.name in record.get(node.module, {}), (
                            f"{notebook.name} imports {full}, which is not public"
                        )


FAMILIES = {
    "experiment": "kdlib.experiment.",
    "sweep": "kdlib.sweep.",
    "cli": "kdlib.cli.",
    "core": "",
}


def _family(new: str) -> str:
    return next(name for name, prefix in FAMILIES.items() if new.startswith(prefix))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_moved_module_paths_warn_and_serve_the_same_objects(family):
    moved = {old: new for old, new in MOVED.items() if _family(new) == family}
    assert moved
    for old, new in moved.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            shim = importlib.import_module(old)
        target = importlib.import_module(new)
        for name in shim.__all__:
            assert getattr(shim, name) is getattr(target, name), f"{old}.{name}"


def test_every_module_file_of_0_2_0_that_moved_is_a_shim():
    shims = {
        f"kdlib.{path.stem}"
        for path in (ROOT / "kdlib").glob("*.py")
        if "warn_moved(__name__" in path.read_text(encoding="utf-8")
    }
    assert shims == set(MOVED)


@pytest.mark.parametrize(
    "package, name, home",
    [
        ("kdlib.experiment", "best_epoch", "kdlib.experiment.training"),
        ("kdlib.experiment", "STOPPING_MONITOR", "kdlib.experiment.config"),
        ("kdlib.experiment", "Artifacts", "kdlib.experiment.report"),
        ("kdlib.sweep", "format_summary", "kdlib.sweep.grid"),
    ],
)
def test_names_that_left_a_package_face_warn_and_still_resolve(package, name, home):
    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved to {home}"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(home), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018
