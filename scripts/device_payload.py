"""Fit a call to a lent GPU machine under its 64 MiB limit on the working tree that travels (the packaged assets
alone are about 84 MiB).

    python scripts/device_payload.py keep NN [NN ...]    # untrack the assets that tutorials NN ... do not load
    python scripts/device_payload.py restore             # track them again

``keep`` removes the other asset folders from git's index only (the files stay on disk) and ignores them in
``.git/info/exclude``, so that the device call sends the code, the named tutorials' assets and the carried wheels;
``restore`` puts the index and the exclude file back as they were. Never commit in between: ``keep`` refuses to
start with staged changes, and ``restore`` is what to run right after the call. docs/running.md has the whole
recipe for a lent machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = "helpers/assets"
LIMIT_MIB = 64
MARKER = "# device_payload.py: assets left behind"

# What each toy tutorial loads from helpers/assets/ (every tutorial loads the toy pair and reads the toy corpus, and
# the Gemma stand-ins of scripts/gpu_check.py build their tokenizer from the toy pair's).
TOY_PAIR = ("toy_pair", "toy_corpus")
VARIANTS = ("toy_release_batchtopk", "toy_release_designated", "toy_release_dedicated", "toy_release_jumprelu",
            "toy_release_delta")
ORGANISMS = ("toy_organisms", "toy_organisms_release", "toy_organisms_release_batchtopk",
             "toy_organisms_release_delta", "toy_organisms_diff_sae")
NOTEBOOK_ASSETS: dict[str, tuple[str, ...]] = {
    "00": TOY_PAIR, "01": TOY_PAIR + ("toy_release",), "02": TOY_PAIR + ("toy_release",),
    "03": TOY_PAIR + ("toy_release",), "04": TOY_PAIR + ("toy_release",), "05": TOY_PAIR + ("toy_release",),
    "06": TOY_PAIR + ("toy_release",), "07": TOY_PAIR + ("toy_release",) + VARIANTS,
    "08": TOY_PAIR + ORGANISMS,
    "09": TOY_PAIR + ("toy_organisms", "toy_organisms_release", "toy_organisms_diff_sae", "toy_narrow",
                      "toy_narrow_readers"),
    "10": TOY_PAIR + ("toy_release_dedicated", "cross_arch_llama", "cross_arch_dfc"),
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def travelling_mib(extra: list[Path]) -> float:
    """MiB of the tracked files plus the untracked files git does not ignore, plus ``extra`` folders (carried)."""
    names = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    files = [ROOT / name for name in names if name and (ROOT / name).is_file()]
    files += [path for folder in extra for path in folder.rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files) / 2**20


def exclude_file() -> Path:
    return ROOT / git("rev-parse", "--git-path", "info/exclude").strip()


def keep(numbers: list[str], carried: list[Path]) -> None:
    unknown = [number for number in numbers if number not in NOTEBOOK_ASSETS]
    if unknown or not numbers:
        sys.exit(f"keep needs tutorial numbers among {sorted(NOTEBOOK_ASSETS)}, got {numbers}")
    missing = [path for path in carried if not path.is_dir()]
    if missing:
        sys.exit(f"--carry: no folder {missing[0]}")
    if MARKER in (exclude_file().read_text() if exclude_file().exists() else ""):
        sys.exit("a payload is already in place: run `python scripts/device_payload.py restore` first")
    if git("diff", "--cached", "--name-only").strip():
        sys.exit("the index has staged changes: commit or unstage them first (restore resets the assets' index)")
    wanted = {name for number in numbers for name in NOTEBOOK_ASSETS[number]}
    folders = sorted(path.name for path in (ROOT / ASSETS).iterdir() if path.is_dir() and git("ls-files", str(path)))
    absent = sorted(wanted - {path.name for path in (ROOT / ASSETS).iterdir() if path.is_dir()})
    if absent:
        sys.exit(f"the table names asset folders that are not tracked: {absent}")
    left = [name for name in folders if name not in wanted]
    for name in left:
        git("rm", "-r", "--cached", "-q", f"{ASSETS}/{name}")
    exclude = exclude_file()
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as stream:
        stream.write("\n".join([MARKER, *[f"/{ASSETS}/{name}/" for name in left], MARKER + " (end)"]) + "\n")
    size = travelling_mib(carried)
    print(f"left behind: {', '.join(left)}\nthe call sends {size:.1f} MiB (limit {LIMIT_MIB} MiB)")
    if size > LIMIT_MIB:
        restore()
        sys.exit(f"{size:.1f} MiB is over the limit: name fewer tutorials per call (restored)")


def restore() -> None:
    git("reset", "-q", "--", ASSETS)
    exclude = exclude_file()
    if exclude.exists():
        lines, inside = [], False
        for line in exclude.read_text().splitlines():
            if line.startswith(MARKER):
                inside = not line.endswith("(end)")
                continue
            if not inside:
                lines.append(line)
        exclude.write_text("\n".join(lines) + ("\n" if lines else ""))
    print(f"restored: {ASSETS} tracked as in HEAD; git status: {git('status', '--short', ASSETS).strip() or 'clean'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("keep", "restore"))
    parser.add_argument("numbers", nargs="*", help="the toy tutorials the call runs (keep)")
    parser.add_argument("--carry", nargs="*", type=Path, default=[], help="folders the call carries (e.g. .whl)")
    args = parser.parse_args()
    if args.action == "keep":
        keep(args.numbers, [ROOT / path for path in args.carry])
    else:
        restore()


if __name__ == "__main__":
    main()
