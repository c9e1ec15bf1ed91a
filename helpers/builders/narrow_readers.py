"""The dictionaries of notebook 09: a crosscoder and a diff-SAE for each narrow pair (chat vs its narrow fine-tune).

    python -m helpers.builders.narrow_readers [--organism NAME ...] [--out DIR]

Each pair gets the L1 crosscoder of its registered default release ``toy-narrow-<organism>-l2`` (1,024 latents at the
middle layer, 614k tokens; ``helpers.training.recipes``) and a diff-SAE of 512 latents, k = 20, on as many tokens
(``helpers.methods.diff_sae.NARROW_DIFF_SAE``). Both train on the pair's toy corpus (stdlib source and chat
dialogues), never on the fine-tune's own data, as dictionaries for diffing are trained in practice. Deterministic
from their seeds; written into ``helpers/assets/toy_narrow_readers/<organism>/{crosscoder,diff_sae}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..methods.diff_sae import NARROW_DIFF_SAE, PACKAGED_NARROW_READERS, build_diff_sae
from ..registry import get_pair
from ..toy.narrow import NARROW_ORGANISMS, narrow_pair_name
from ..training.recipes import build_toy_release


def build_narrow_readers(organisms: list[str] | None = None,
                         out_dir: Path = PACKAGED_NARROW_READERS) -> dict[str, float]:
    """Train the crosscoder and the diff-SAE of each of ``organisms`` (default: all) into
    ``out_dir/<organism>/{crosscoder,diff_sae}``; returns seconds per organism."""
    names = [o.name for o in NARROW_ORGANISMS]
    chosen = names if organisms is None else list(organisms)
    unknown = [name for name in chosen if name not in names]
    if unknown or not chosen:
        raise ValueError(f"organisms must be among {names}, got {chosen}")
    if not Path(out_dir).parent.is_dir():
        raise FileNotFoundError(f"out_dir {out_dir}: the folder {Path(out_dir).parent} does not exist")
    seconds = {}
    for name in chosen:
        started = time.perf_counter()
        pair_name = narrow_pair_name(name)
        build_toy_release(get_pair(pair_name).release, Path(out_dir) / name / "crosscoder")
        build_diff_sae(pair_name, Path(out_dir) / name / "diff_sae", **NARROW_DIFF_SAE)
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: crosscoder and diff-SAE in {seconds[name]} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organism", nargs="*", choices=[o.name for o in NARROW_ORGANISMS], default=None)
    parser.add_argument("--out", type=Path, default=PACKAGED_NARROW_READERS, help="default: the package's assets")
    args = parser.parse_args()
    build_narrow_readers(args.organism, args.out)


if __name__ == "__main__":
    main()
