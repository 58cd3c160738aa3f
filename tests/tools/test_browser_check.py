"""The browser check's own test: its Run All waits for every cell, not for a quiet moment.

Needs Chromium (``make test-browser`` runs it; ``make test`` deselects the ``browser`` marker).

The notebook below reproduces, deterministically, what made CI fail once on notebook 07: after
a cell tagged ``raises-exception`` fails, JupyterLab marks every still-queued cell as idle (no
``[*]`` prompt) although the kernel goes on to run them; the kernel also reports itself idle
between two cells. A check that stops at the first moment with an idle kernel and no ``[*]``
prompt then reports the remaining cells as "did not run". Here the gap is made long: the
middle cell announces ``idle`` itself, then works for a few seconds before the last cell.
"""

from __future__ import annotations

import re
import shutil

import pytest
from helpers import lazy_import

nbformat = lazy_import("nbformat")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (shutil.which("chromium") or shutil.which("chromium-browser")),
        reason="needs Chromium (apt-get install -y chromium)",
    ),
]

GAP_S = 4


def _notebook(path):
    fails = nbformat.v4.new_code_cell('raise ValueError("on purpose")')
    fails.metadata["tags"] = ["raises-exception"]
    gap = nbformat.v4.new_code_cell(
        "import time\n"
        "kernel = get_ipython().kernel\n"
        'kernel._publish_status("idle", "shell")  # what the kernel says between two cells\n'
        f"time.sleep({GAP_S})\n"
        'print("middle cell done")'
    )
    last = nbformat.v4.new_code_cell('print("last cell ran")')
    notebook = nbformat.v4.new_notebook(cells=[fails, gap, last])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)


def test_run_all_waits_for_cells_queued_after_an_expected_error(tmp_path, capsys):
    import browser_check

    path = tmp_path / "01_gap.ipynb"
    _notebook(path)
    rc = browser_check.main([str(path)])
    out = capsys.readouterr().out
    assert "01_gap.ipynb: 3 cells run" in out, out
    assert rc == 0, out


def test_an_unexpected_error_is_reported_at_once_with_the_cells_it_stopped(tmp_path, capsys):
    """Without the tag, the kernel aborts the queued cells; their (aborted) replies end the
    wait at once instead of after the 5-minute bound."""
    import browser_check

    path = tmp_path / "01_error.ipynb"
    cells = [
        nbformat.v4.new_code_cell('raise ValueError("not on purpose")'),
        nbformat.v4.new_code_cell('print("never runs")'),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)
    rc = browser_check.main([str(path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "01_error.ipynb: 1 cells run" in out, out
    assert "1 code cells did not run" in out and "ValueError: not on purpose" in out, out
    seconds = int(re.search(r"01_error\.ipynb: .* \((\d+) s\)", out)[1])
    assert seconds < browser_check.RUN_ALL_S, out
