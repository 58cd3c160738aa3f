"""kdlib's public API is a contract: names in ``__all__`` do not vanish or change signature.

The record is ``tests/public_api.json`` (written by ``scripts/public_api.py --write``). A name
may leave ``__all__`` only through a deprecation: it stays importable for at least one minor
version and warns with a ``DeprecationWarning`` (see the README's "Stability" section).
A signature may only grow: new parameters need defaults; existing ones keep name, kind and
default.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import warnings
from pathlib import Path

import pytest
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "tests" / "public_api.json").read_text(encoding="utf-8"))
public_api = load_script("public_api")

ENTRIES = [(m, n) for m, names in sorted(RECORD.items()) for n in sorted(names)]
_PARAM = re.compile(r"^(?P<stars>\*{0,2})(?P<name>\w+)(?::[^=]*)?(?:=(?P<default>.*))?$")


def _params(signature: str) -> list[tuple[str, str, str | None]]:
    """(kind marker, name, default) of each parameter of a recorded signature string."""
    parts, depth, current = [], 0, ""
    for ch in signature[signature.index("(") + 1 :]:  # split on top-level commas only
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:  # the parenthesis that closes the parameter list
            break
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    out, keyword_only = [], False
    for part in parts:
        if part in ("*", "/"):
            keyword_only = keyword_only or part == "*"
            continue
        match = _PARAM.match(part)
        assert match, f"cannot read parameter {part!r}"
        kind = match["stars"] or ("kw" if keyword_only else "pos")
        keyword_only = keyword_only or match["stars"] == "*"
        default = match["default"].strip() if match["default"] else None
        out.append((kind, match["name"], default))
    return out


def compatible(old: str, new: str) -> str | None:
    """None if signature ``new`` accepts every call that ``old`` accepted, else the reason."""
    before, after = _params(old), _params(new)
    names_after = {name: (kind, default) for kind, name, default in after}
    for position, (kind, name, default) in enumerate(before):
        if name not in names_after:
            return f"parameter {name!r} was removed"
        new_kind, new_default = names_after[name]
        if kind != new_kind:
            return f"parameter {name!r} changed kind ({kind} -> {new_kind})"
        if default != new_default:
            return f"parameter {name!r} changed default ({default} -> {new_default})"
        if kind == "pos" and after[position][1] != name:
            return f"positional parameter {name!r} moved"
    old_names = {name for _, name, _ in before}
    for kind, name, default in after:
        if name not in old_names and default is None and kind in ("pos", "kw"):
            return f"new parameter {name!r} has no default"
    return None


@pytest.mark.parametrize("module_name, name", ENTRIES, ids=[f"{m}.{n}" for m, n in ENTRIES])
def test_public_name_still_works(module_name, name):
    module = importlib.import_module(module_name)
    listed = name in getattr(module, "__all__", ())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hasattr(module, name), (
            f"{module_name}.{name} is public (tests/public_api.json) but no longer exists; "
            "keep it importable with a DeprecationWarning for at least one minor version"
        )
        obj = getattr(module, name)
    if not listed:
        assert any(issubclass(w.category, DeprecationWarning) for w in caught), (
            f"{module_name}.{name} left __all__ without a DeprecationWarning"
        )
        return
    recorded, current = RECORD[module_name][name], public_api.describe(obj)
    if isinstance(recorded, dict):
        for member, signature in recorded.items():
            assert member in current, f"{module_name}.{name}.{member} was removed"
            reason = compatible(signature, current[member])
            assert reason is None, f"{module_name}.{name}.{member}: {reason}"
    elif recorded not in ("callable",) and recorded.startswith("("):
        reason = compatible(recorded, current)
        assert reason is None, f"{module_name}.{name}{recorded} -> {current}: {reason}"


def test_record_lists_every_public_name():
    missing = {
        f"{module}.{name}"
        for module, names in public_api.public_api().items()
        for name in names
        if name not in RECORD.get(module, {})
    }
    assert not missing, (
        f"new public names {sorted(missing)}: record them with `python scripts/public_api.py "
        "--write` (and add them to CHANGELOG.md)"
    )


@pytest.mark.parametrize(
    "old, new, ok",
    [
        ("(x, y=1)", "(x, y=1, z=2)", True),
        ("(x, y=1)", "(x, y=1, *, z=2)", True),
        ("(x, y=1)", "(x, y=2)", False),
        ("(x, y=1)", "(x)", False),
        ("(x, y=1)", "(y=1, x=0)", False),
        ("(*, teacher, student)", "(*, teacher, student, **kwargs)", True),
        ("(x)", "(x, z)", False),
        ("(x, shape=(1, 2))", "(x, shape=(1, 2))", True),
    ],
)
def test_compatible_reads_signatures(old, new, ok):
    assert (compatible(old, new) is None) is ok
