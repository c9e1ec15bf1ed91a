"""Freeze the toy world's text: the standard library's source as the toy pair was built on it.

    python -m helpers.builders.toy_corpus [--out helpers/assets/toy_corpus/stdlib.json.xz]

The toy corpus is the stdlib's own ``.py`` files (tests, idlelib, turtledemo and lib2to3 left out). Another Python
has other files (3.12 dropped ``asyncore`` and ``distutils``; some builds have no ``tkinter``), so reading the running
interpreter's stdlib gave another corpus on Colab's Python than the one the shipped models learned. This writes
the running interpreter's files, in a fixed order, into one xz-compressed JSON: ``{"python": version, "files":
{relative path: text}}`` (text read as UTF-8, undecodable bytes replaced). The shipped snapshot was written on
Python 3.11.7, the interpreter every shipped toy model was built on; ``helpers.toy.corpus`` reads it everywhere.
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import sysconfig
from pathlib import Path

from ..toy.corpus import CORPUS_SNAPSHOT

EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "turtledemo", "lib2to3"}


def stdlib_files(root: Path) -> list[Path]:
    """The ``.py`` files under ``root`` outside ``EXCLUDED_DIRS``, sorted by their parts (the order of the corpus)."""
    if not root.is_dir():
        raise FileNotFoundError(f"no standard library folder at {root}")
    return sorted(path for path in root.rglob("*.py") if not EXCLUDED_DIRS & set(path.relative_to(root).parts[:-1]))


def write_snapshot(out: Path = CORPUS_SNAPSHOT) -> Path:
    """Write the snapshot of the running interpreter's stdlib to ``out``; returns ``out``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    if not files:
        raise ValueError(f"no .py files under {root}: is it a standard library folder?")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: the folder {out.parent} does not exist")
    texts = {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8", errors="replace") for path in files}
    payload = json.dumps({"python": platform.python_version(), "files": texts}, ensure_ascii=False)
    out.write_bytes(lzma.compress(payload.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS_SNAPSHOT)
    args = parser.parse_args()
    path = write_snapshot(args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) from Python {platform.python_version()}")


if __name__ == "__main__":
    main()
