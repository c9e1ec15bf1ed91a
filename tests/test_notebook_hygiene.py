"""Every notebook opens the same way and is committed without outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.tutorial.notebook import COLAB_BADGE_URL, GITHUB_REPO, SETUP_CELL

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opening_and_hygiene(path: Path):
    notebook = json.loads(path.read_text())
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), "numbered snake_case file name"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    cells = notebook["cells"]
    ids = [cell.get("id") for cell in cells]
    well_formed = all(isinstance(i, str) and re.fullmatch(r"[A-Za-z0-9-_]{1,64}", i) for i in ids)
    assert well_formed and len(set(ids)) == len(ids), "every cell has an id of its own (nbformat 4.5; nbmake warns)"
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown"
    badge = COLAB_BADGE_URL.format(repo=GITHUB_REPO, filename=path.name)
    assert badge in first, f"the Colab badge must point at {path.name} itself"
    number = path.name[:2]
    assert re.search(rf"^# {number} · \S", first, re.MULTILINE), "title '# NN · Title'"
    assert "Runtime" in first and "Prerequisites" in first
    assert cells[1]["cell_type"] == "code" and "".join(cells[1]["source"]) == SETUP_CELL
    config = [c for c in cells if c["cell_type"] == "code" and "PAIR = " in "".join(c["source"])]
    assert config, "a configuration cell that sets PAIR"
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, "strip outputs"
    assert any("assert " in "".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert any(c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## Where to go next")
               for c in cells), "a 'Where to go next' section"


EXERCISE_NOTEBOOKS = ["01", "02", "03", "04", "06"]


@pytest.mark.parametrize("number", EXERCISE_NOTEBOOKS)
def test_exercises_have_stub_hidden_solution_and_check(number: str):
    """ARENA-style: a stub that raises until written, a collapsed solution cell (Jupyter and Colab), a check."""
    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    cells = json.loads(path.read_text())["cells"]
    solutions = [i for i, c in enumerate(cells) if "solution" in c["metadata"].get("tags", [])]
    assert solutions, f"{path.name} has no exercise"
    for i in solutions:
        stub, solution, check = ("".join(cells[j]["source"]) for j in (i - 1, i, i + 1))
        assert "raise NotImplementedError" in stub and "# EXERCISE" in stub
        name = re.search(r"^def (\w+)\(", stub, re.MULTILINE).group(1)
        assert f"def {name}(" in solution and "NotImplementedError" not in solution
        assert cells[i]["metadata"]["jupyter"]["source_hidden"] and cells[i]["metadata"]["cellView"] == "form"
        assert re.search(rf"check_\w+\({name}\b", check), "the cell after the solution checks the learner's function"
