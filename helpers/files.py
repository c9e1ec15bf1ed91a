"""Atomic file writes and JSON reading: the leaf every module that writes to disk builds on.

A file written with ``write_atomically`` is either the old file or the complete new one, never half of
either: the content goes to a temporary file in the same folder, is flushed to disk, and is moved over
the target in one ``os.replace``. A failure (disk full, an exception in ``write``) leaves the target as
it was and removes the temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MissingAssetError(FileNotFoundError):
    """A packaged asset (the toy pair, a toy release) that is not on disk; the message names the rebuild."""


class FileFormatError(ValueError):
    """A file that exists but cannot be read as what it should be."""


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically. NaN and infinity are refused (they are not JSON)."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``; a ``FileFormatError`` naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FileFormatError(f"{path} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise FileFormatError(f"{path} is not a text file: {error}") from error
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} holds a JSON {type(data).__name__}, expected an object")
    return data
