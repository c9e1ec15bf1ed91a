"""Every tutorial runs top to bottom (on the toy pair unless ``CROSSCODER_PAIR`` says otherwise).

Each notebook is executed in its own kernel, in the ``notebooks/`` folder, with a 15-minute limit per cell.
The executed copy, outputs included, is written to ``outputs/notebooks/`` whether it passes or not (to read
what failed), and ``scripts/site.sh`` builds the rendered site from those copies without executing again.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXECUTED = ROOT / "outputs" / "notebooks"
CELL_TIMEOUT_S = 900


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        EXECUTED.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, EXECUTED / path.name)
