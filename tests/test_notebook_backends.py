"""Notebook 06 on JAX and PyTorch: it stops at its set-up, saying that LiteRT export needs
TensorFlow (``make test-notebooks-backends`` runs this with ``KERAS_BACKEND=jax`` and
``torch``, after nbval over the notebooks that run on every backend)."""

from __future__ import annotations

import keras
import nbformat
import pytest
from helpers import ROOT
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = ROOT / "notebooks" / "06_shipping_the_student.ipynb"


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow", reason="on TensorFlow notebook 06 runs in full"
)
def test_notebook_06_stops_cleanly_at_its_set_up(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    nb.cells = code[:3]  # the Colab cell, the set-up, and the first cell that would train
    for cell in nb.cells:  # the committed outputs of a TensorFlow run
        cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    message = str(info.value)
    assert "to_litert converts through TensorFlow" in message
    assert f"Keras runs on '{keras.backend.backend()}'" in message
    assert "KERAS_BACKEND=tensorflow" in message
    assert not nb.cells[2].outputs and nb.cells[2].execution_count is None  # nothing trained
