"""Would `pip install` of this package change anything Colab's GPU runtime already has? Exit 1 if so.

Resolves the package's dependencies (pyproject.toml) and requirements.txt for Colab's Python (3.13, x86_64
manylinux) against constraints/colab-gpu.txt (a copy of ../shared/colab/constraints-gpu.txt: the versions
Colab's current GPU runtime ships), with uv
(pip cannot target another Python: under this machine's 3.11, transformer-lens pins numpy < 2, which it does
only below Python 3.13). torch's own CUDA and triton pins are left out of the constraints and Colab's torch
version is given as an override: PyPI's torch wheel pins CUDA-13 packages where Colab's cu128 build pins
others. Every other package Colab has must resolve to Colab's version; the report lists what would be added.

    python scripts/colab_check.py [--constraints PATH]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONSTRAINTS = ROOT / "constraints" / "colab-gpu.txt"  # a copy of ../shared/colab/constraints-gpu.txt
# torch and what its wheel pins: Colab's own torch build satisfies our torch range, so pip leaves these alone
TORCH_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)$")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements / constraints file, by normalised name."""
    return {normalise(m.group(1)): m.group(2) for line in text.splitlines() if (m := PIN.match(line.strip()))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, default=DEFAULT_CONSTRAINTS)
    args = parser.parse_args()
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    colab = pins(args.constraints.read_text())
    kept = [f"{name}=={version}" for name, version in colab.items() if not TORCH_STACK.match(name)]
    with tempfile.TemporaryDirectory() as tmp:
        constraints, override, resolved = (Path(tmp) / n for n in ("constraints.txt", "override.txt", "out.txt"))
        constraints.write_text("\n".join(kept) + "\n")
        override.write_text(f"torch=={colab['torch']}\n")
        command = [uv, "pip", "compile", str(ROOT / "pyproject.toml"), str(ROOT / "requirements.txt"),
                   "--python-version", "3.13", "--python-platform", "x86_64-manylinux_2_28", "-c", str(constraints),
                   "--override", str(override), "--no-header", "--quiet", "-o", str(resolved)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"FAIL: the requirements do not resolve against Colab's versions:\n{done.stderr}")
            return 1
        ours = pins(resolved.read_text())
    ours = {name: version for name, version in ours.items() if name == "torch" or not TORCH_STACK.match(name)}
    changed = {name: (colab[name], version) for name, version in ours.items()
               if name in colab and colab[name] != version}
    added = sorted(f"{name}=={version}" for name, version in ours.items() if name not in colab)
    print(f"resolved {len(ours)} packages for Python 3.13 against {len(colab)} Colab pins (torch {colab['torch']})")
    print(f"kept at Colab's version: {len(ours) - len(added) - len(changed)}; would be added: {len(added)}")
    for line in added:
        print(f"  + {line}")
    if changed:
        for name, (theirs, version) in sorted(changed.items()):
            print(f"FAIL: {name} would change from Colab's {theirs} to {version}")
        return 1
    print("OK: installing the package changes no package Colab's GPU runtime ships")
    return 0


if __name__ == "__main__":
    sys.exit(main())
