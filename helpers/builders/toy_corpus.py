"""Freeze the toy world's text: the standard library's source as the toy pair was built on it.

    python -m helpers.builders.toy_corpus [--out helpers/assets/toy_corpus/stdlib.json.xz] [--table-only]

The toy corpus is the stdlib's own ``.py`` files (tests, idlelib, turtledemo and lib2to3 left out). Another Python
has other files (3.12 dropped ``asyncore`` and ``distutils``; some builds have no ``tkinter``), so reading the running
interpreter's stdlib gave another corpus on Colab's Python than the one the shipped models learned. This writes
the running interpreter's files, in a fixed order, into one xz-compressed JSON: ``{"python": version, "files":
{relative path: text}}`` (text read as UTF-8, undecodable bytes replaced). The shipped snapshot was written on
Python 3.11.7, the interpreter every shipped toy model was built on; ``helpers.toy.corpus`` reads it everywhere.

Beside it goes ``functions.json.xz``, derived from the snapshot: each file's public functions and methods with the
first line of their docstring (``documented_functions``), from which the toy dialogues are made. ``--table-only``
rewrites only that table, from the snapshot already there (on any Python).
"""

from __future__ import annotations

import argparse
import ast
import json
import lzma
import platform
import sysconfig
from pathlib import Path

from ..toy.corpus import CORPUS_SNAPSHOT, FUNCTIONS_TABLE, load_snapshot

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
    return _write_xz_json(out, {"python": platform.python_version(), "files": texts})


def documented_functions(source: str) -> list[tuple[str, str]]:
    """(qualified name, first docstring line) of the public functions and methods in one file's ``source`` (none
    if it does not parse); a first line is kept if it has 8 to 160 characters."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a file's text, got {type(source).__name__}")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in tree.body:
        candidates: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.FunctionDef):
            candidates = [(node.name, node)]
        elif isinstance(node, ast.ClassDef):
            candidates = [(node.name, node)] + [
                (f"{node.name}.{child.name}", child) for child in node.body if isinstance(child, ast.FunctionDef)
            ]
        for name, item in candidates:
            if any(part.startswith("_") for part in name.split(".")):
                continue
            doc = ast.get_docstring(item)  # type: ignore[arg-type]
            first_line = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
            if 8 <= len(first_line) <= 160:
                found.append((name, first_line))
    return found


def functions_table(files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """``documented_functions`` of each of ``files`` (``{relative path: text}``, a snapshot's) that has any, in
    their order."""
    table = {path: documented_functions(text) for path, text in files.items()}
    return {path: rows for path, rows in table.items() if rows}


def write_functions_table(snapshot: Path = CORPUS_SNAPSHOT, out: Path = FUNCTIONS_TABLE) -> Path:
    """Write ``functions_table`` of the snapshot at ``snapshot`` to ``out`` (xz-compressed JSON); returns ``out``."""
    files = load_snapshot(snapshot)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder {out.parent} does not exist")
    return _write_xz_json(out, functions_table(files))


def _write_xz_json(out: Path, payload: object) -> Path:
    """``payload`` as xz-compressed UTF-8 JSON at ``out`` (the same bytes for the same payload); returns ``out``."""
    out.write_bytes(lzma.compress(json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                  preset=9 | lzma.PRESET_EXTREME))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS_SNAPSHOT)
    parser.add_argument("--table-only", action="store_true", help="rewrite only the function table beside --out")
    args = parser.parse_args()
    if not args.table_only:
        path = write_snapshot(args.out)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) from Python {platform.python_version()}")
    table = write_functions_table(args.out, args.out.parent / FUNCTIONS_TABLE.name)
    print(f"wrote {table} ({table.stat().st_size / 2**10:.0f} KiB)")


if __name__ == "__main__":
    main()
