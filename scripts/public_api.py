#!/usr/bin/env python
"""Record kdlib's public API (``__all__`` of the package and of each public module).

``tests/public_api.json`` holds, for every public module, each public name with its signature
(for a class: its constructor and its public methods), and the names each deprecated module
path still serves. ``tests/test_public_api.py`` compares the code with that record, so a
public name cannot appear, disappear or change its signature by accident. After a deliberate,
compatible change (a new name, a new optional parameter), record it::

    python scripts/public_api.py --write

Removing or renaming a public name follows the deprecation policy in docs/stability.md.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "public_api.json"


def describe(obj: Any) -> Any:
    """A JSON-able description: a signature string, or a class's constructor and methods."""
    if inspect.isclass(obj):
        methods = {
            name: str(inspect.signature(member))
            for name, member in sorted(vars(obj).items())
            if not name.startswith("_") and inspect.isfunction(member)
        }
        return {"__init__": str(inspect.signature(obj)), **methods}
    if callable(obj):
        try:
            return str(inspect.signature(obj))
        except (TypeError, ValueError):  # builtins without a signature
            return "callable"
    return type(obj).__name__


def public_api() -> dict[str, Any]:
    """``{module: {name: description}}`` for ``kdlib`` and every module it lists as public,
    and under ``"deprecated"`` each moved 0.2.0 module with the names it still serves."""
    import kdlib
    from kdlib._deprecated import MOVED

    api: dict[str, Any] = {
        "kdlib": {name: describe(getattr(kdlib, name)) for name in kdlib.__all__}
    }
    for module_name in kdlib.PUBLIC_MODULES:
        module = importlib.import_module(f"kdlib.{module_name}")
        names = getattr(module, "__all__", None)
        if names is None:
            raise SystemExit(f"kdlib.{module_name} has no __all__; list its public names")
        api[f"kdlib.{module_name}"] = {name: describe(getattr(module, name)) for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        api["deprecated"] = {
            old: sorted(importlib.import_module(old).__all__) for old in sorted(MOVED)
        }
    return api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {RECORD.name}")
    args = parser.parse_args(argv)
    text = json.dumps(public_api(), indent=1, sort_keys=True) + "\n"
    if args.write:
        tmp = RECORD.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(RECORD)
        print(f"wrote {RECORD}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
