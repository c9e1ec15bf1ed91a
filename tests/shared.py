"""Work done once for all pytest-xdist workers: the first worker to ask does it under a file lock, the others
read what it left (``conftest.py`` runs the first test that needs it early and the rest last, so none waits)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def shared_folder(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The base temporary folder all workers of this run share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


def built_once(target: Path, build: Callable[[Path], None]) -> Path:
    """``target`` after ``build(target)`` ran once in this run; ``build`` must write ``target`` last (its presence
    says the build finished)."""
    from filelock import FileLock

    with FileLock(f"{target}.lock"):
        if not target.exists():
            build(target)
    return target
