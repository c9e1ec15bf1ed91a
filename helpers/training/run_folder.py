"""A training run's checkpoint folder: ``step_NNNNNNN/`` checkpoints and ``latest.txt`` naming the newest.

Nothing written is ever lost and ``latest.txt`` never names an incomplete or missing checkpoint:

- a checkpoint is written into ``.step_NNNNNNN.partial`` and renamed to ``step_NNNNNNN`` only when every
  file is on disk, then ``latest.txt`` is replaced atomically; a step saved twice (an interrupt right after
  a periodic save) is written once;
- old checkpoints are removed only after ``latest.txt`` names a newer one, and only the run's own: a
  folder belongs to one run (``run.json``), and a new run refuses a folder that holds another run's
  checkpoints instead of mixing or deleting them;
- a checkpoint being removed is first renamed to ``.step_NNNNNNN.trash``, so a kill mid-removal never
  leaves a half-deleted ``step_*`` folder; a failed write (disk full) removes its staging folder and says
  which checkpoint is the last complete one.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from ..files import read_json, write_atomically, write_json

LATEST = "latest.txt"
RUN_FILE = "run.json"
STEP_PATTERN = re.compile(r"step_(\d{7,})")


class CheckpointDirError(RuntimeError):
    """A checkpoint folder that belongs to another run, or whose checkpoints cannot be read or written."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def step_folders(root: Path) -> list[Path]:
    """The complete checkpoints in ``root``, oldest first."""
    found = [(int(m.group(1)), p) for p in root.glob("step_*") if (m := STEP_PATTERN.fullmatch(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path:
    """The checkpoint ``latest.txt`` names; a clear error if there is none or it is gone."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        raise FileNotFoundError(f"no checkpoint in {root} (no {LATEST})")
    folder = root / pointer.read_text().strip()
    if not STEP_PATTERN.fullmatch(folder.name) or not folder.is_dir():
        raise CheckpointDirError(f"{pointer} names {folder.name!r}, which is not a checkpoint in {root}; "
                                 f"checkpoints there: {[p.name for p in step_folders(root)]}")
    return folder


def run_id_of(root: str | Path) -> str | None:
    """The id of the run that owns ``root`` (``None`` if no run has written there)."""
    run_file = Path(root) / RUN_FILE
    return str(read_json(run_file)["run_id"]) if run_file.is_file() else None


def check_free(root: str | Path, run_id: str | None = None) -> None:
    """Refuse ``root`` for a new run (``run_id``) if it is a file or holds another run's checkpoints."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CheckpointDirError(f"{root} is a file; a run's checkpoints need a folder")
    owner = run_id_of(root) if root.is_dir() else None
    if owner is None and root.is_dir() and (step_folders(root) or (root / LATEST).exists()):
        owner = "an unnamed earlier run"
    if owner is not None and owner != run_id:
        raise CheckpointDirError(
            f"{root} holds the checkpoints of another run ({owner}; latest: "
            f"{(root / LATEST).read_text().strip() if (root / LATEST).exists() else 'none'}). Resume it "
            "(Trainer.resume(checkpoint_dir, buffer), or --resume on the command line), or give this run an empty "
            "folder; nothing there was changed.")


class RunFolder:
    """The checkpoint folder of the run ``run_id`` (see the module docstring)."""

    def __init__(self, root: str | Path, run_id: str, keep: int):
        self.root, self.run_id, self.keep = Path(root), run_id, keep
        self._claimed = False

    def claim(self) -> None:
        """Make ``root`` this run's (before its first step), or refuse a folder with another run's checkpoints."""
        check_free(self.root, self.run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / RUN_FILE, {"run_id": self.run_id})
        for leftover in [*self.root.glob(".step_*.partial"), *self.root.glob(".step_*.trash")]:
            shutil.rmtree(leftover, ignore_errors=True)  # an interrupted write or removal of this run's
        self._claimed = True

    def write(self, step: int, write_checkpoint: Callable[[Path], None]) -> Path:
        """Write the checkpoint of ``step`` with ``write_checkpoint(folder)``, point ``latest.txt`` at it, and
        remove this run's checkpoints beyond the newest ``keep``. Returns the checkpoint's folder."""
        if not self._claimed:
            self.claim()
        final = self.root / f"step_{step:07d}"
        if not final.is_dir():
            staging = self.root / f".{final.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                write_checkpoint(staging)
                staging.rename(final)
            except OSError as error:
                shutil.rmtree(staging, ignore_errors=True)
                last = (self.root / LATEST).read_text().strip() if (self.root / LATEST).exists() else "none"
                raise CheckpointDirError(f"could not write checkpoint {final.name} in {self.root}: {error}. The last "
                                         f"complete checkpoint is {last}; free space and resume from it.") from error
        write_atomically(self.root / LATEST, lambda tmp: tmp.write_text(final.name))
        for old in step_folders(self.root)[: -self.keep]:
            if old != final:
                trash = old.with_name(f".{old.name}.trash")
                old.rename(trash)
                shutil.rmtree(trash)
        return final
