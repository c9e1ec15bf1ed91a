"""Every tutorial runs top to bottom: on the toy pair (unless ``CROSSCODER_PAIR`` says otherwise), and, unchanged,
on the Gemma-2-2B profile against the offline Hub rehearsal (``helpers.rehearsal``) at the smoke scale.

Each notebook is executed in its own kernel, in the ``notebooks/`` folder, with a 15-minute limit per cell.
The executed copy, outputs included, is written to ``outputs/notebooks/`` (rehearsals: ``outputs/rehearsal/
notebooks/<pair>/``) whether it passes or not (to read what failed), and ``scripts/site.sh`` builds the rendered
site from the toy copies without executing again.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers.rehearsal import REHEARSED_NOTEBOOKS, rehearsal_env

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXECUTED = ROOT / "outputs" / "notebooks"
REHEARSED = ROOT / "outputs" / "rehearsal" / "notebooks"
CELL_TIMEOUT_S = 900


def execute(path: Path, executed: Path, env: dict[str, str] | None = None) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(**({"env": env} if env else {}))
    finally:
        executed.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed / path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path):
    execute(path, EXECUTED)


@pytest.mark.parametrize(("profile", "path"), [(profile, path) for profile, numbers in REHEARSED_NOTEBOOKS.items()
                                              for path in NOTEBOOKS if path.name[:2] in numbers],
                         ids=lambda value: getattr(value, "name", value))
def test_notebook_runs_on_the_rehearsal(profile: str, path: Path, rehearsal_home: Path):
    execute(path, REHEARSED / profile, env={**os.environ, **rehearsal_env(rehearsal_home, profile)})
