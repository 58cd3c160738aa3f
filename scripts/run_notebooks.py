#!/usr/bin/env python
"""Execute notebooks in place, in full mode, so the committed copies carry real outputs.

This is what ``make notebooks`` runs after ``scripts/sync_notebooks.py``. It

- removes ``KDLIB_FAST`` from the kernel's environment (committed notebooks show a full
  run) and ``MPLBACKEND`` (so matplotlib uses the inline backend and the plots are saved);
- runs each notebook top to bottom with nbclient (a cell error stops with a traceback);
  TensorFlow's C++ start-up lines never reach the outputs: the set-up cell starts Keras
  through ``kdlib.runtime.start_quietly()``;
- writes the notebook back and prints how long it took.

Usage::

    python scripts/run_notebooks.py                       # every notebooks/NN_*.ipynb
    python scripts/run_notebooks.py notebooks/01_*.ipynb
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
TIMEOUT_S = 1800  # per cell: notebook 04 runs its whole protocol (5 seeds) in one cell


def run(path: Path) -> float:
    """Execute ``path`` in its own folder and write it back; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps: smaller diffs between runs
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/NN_*.ipynb")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob(NOTEBOOK_GLOB))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    for var in ("KDLIB_FAST", "MPLBACKEND"):
        if os.environ.pop(var, None) is not None:
            print(f"unset {var} for the kernel (committed notebooks show a full, inline run)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for path in paths:
        print(f"running {path} ...", flush=True)
        seconds = run(path)
        print(f"  {path}: {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
