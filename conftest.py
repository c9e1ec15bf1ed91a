"""The tutorials under nbmake: ``pytest --nbmake`` executes copies of the notebooks, never the sources.

Before collection, when notebooks are to run (a plain ``pytest``, or a path into ``outputs/notebooks/<pair>``), the
controller copies ``notebooks/NN_*.ipynb`` into ``outputs/notebooks/<pair>/`` (the pair is ``CROSSCODER_PAIR``,
``toy`` when unset; a rehearsal profile copies only the notebooks it rehearses; a path to one notebook copies that
one), so every pair
writes its executed copies, dashboards and runs in a place of its own, and ``--overwrite`` (set in pyproject.toml)
leaves the executed copies there for ``scripts/site.sh``. A plain ``pytest`` (testpaths) collects that folder
beside ``tests/``; ``pytest --nbmake outputs/notebooks/<pair>`` runs the notebooks alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Under pytest-xdist (`-n 2`, see pyproject.toml) each worker, and the notebook kernels it starts, uses one
# thread: two single-threaded workers share 2 cores far better than two that each spin up 2 threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent
SOURCES = ROOT / "notebooks"
EXECUTED = ROOT / "outputs" / "notebooks"

# Seconds each notebook takes alone on a 2-core CPU, per pair. Notebooks run first, longest first, and
# `--maxschedchunk 1` (pyproject.toml) hands tests to the pytest-xdist workers one at a time, so each worker takes
# the longest notebook left whenever it is free and the short unit tests fill in behind. (By default xdist gives
# each worker a quarter of its share up front, as one block: one worker would get every notebook.)
NOTEBOOK_SECONDS = {
    "toy": {"07": 165, "06": 135, "02": 115, "08": 99, "05": 82, "03": 66, "09": 60, "04": 42, "10": 40, "00": 24,
            "01": 18},
    "gemma-2-2b": {"02": 120, "06": 100, "00": 85, "05": 70, "03": 50, "04": 40, "07": 40, "01": 25},
    "rehearsal-llama": {"02": 20, "05": 17, "04": 15},
}


def notebook_pair() -> str:
    return os.environ.get("CROSSCODER_PAIR") or "toy"


def copy_notebooks(pair: str, only: list[str] | None = None) -> Path:
    """Fresh copies of the tutorials the pair runs (or of the files named in ``only``), in
    ``outputs/notebooks/<pair>/``; other executed copies there are kept."""
    from helpers.builders.rehearsal import REHEARSED_NOTEBOOKS

    numbers = REHEARSED_NOTEBOOKS.get(pair)
    folder = EXECUTED / pair
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.ipynb")):
        if (numbers is None or source.name[:2] in numbers) and (only is None or source.name in only):
            shutil.copy(source, folder / source.name)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("nbmake", default=False):
        return
    folder = EXECUTED / notebook_pair()
    everything = config.args_source == pytest.Config.ArgsSource.TESTPATHS  # a plain `pytest`
    if not hasattr(config, "workerinput"):  # pytest-xdist workers collect what the controller copied
        if config.getoption("overwrite", default=False):
            sources = [arg for arg in config.args if (ROOT / arg).resolve().is_relative_to(SOURCES)]
            if sources:
                raise pytest.UsageError(f"--overwrite (on in pyproject.toml) would write outputs into the tutorials' "
                                        f"sources {sources}: run `pytest --nbmake outputs/notebooks/<pair>` instead")
        named = [(ROOT / arg.split("::")[0]).resolve() for arg in config.args]
        if everything or folder.resolve() in named:
            copy_notebooks(notebook_pair())
        elif files := [path.name for path in named if path.parent == folder.resolve()]:
            copy_notebooks(notebook_pair(), only=files)  # `pytest outputs/notebooks/toy/03_....ipynb`
    if everything:  # the copies beside tests/
        config.args.append(str(folder.relative_to(ROOT)))


# Fixtures built once for all pytest-xdist workers (tests/shared.py), each with the fixture whose first user builds
# everything the others need: that test runs right after the notebooks, the others last, when the builds are there,
# so no worker waits on a build's lock.
SHARED_BUILDS = {"rehearsal_home": "measured", "ddp_runs": "ddp_runs"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def uses(item: pytest.Item, fixture: str) -> bool:
        return fixture in getattr(item, "fixturenames", ())

    leaders = {next((item for item in items if uses(item, leader)), None) for leader in SHARED_BUILDS.values()}
    followers = {item for item in items if any(uses(item, fixture) for fixture in SHARED_BUILDS)} - leaders

    def run_order(item: pytest.Item) -> tuple[int, int]:
        if item.path.suffix == ".ipynb":
            return 0, -NOTEBOOK_SECONDS.get(item.path.parent.name, {}).get(item.path.name[:2], 0)
        if item in leaders:
            return 1, 0
        return (3, 0) if item in followers else (2, 0)

    items.sort(key=run_order)
