"""Where the shipped toy pair and toy organisms live: locating them, never building them.

The toy pair (``helpers/assets/toy_pair``: ``base/``, ``chat/``, ``build_report.json``) is a tiny Gemma-2 base
model and a chat fine-tune with a planted refusal; the toy organisms (``helpers/assets/toy_organisms``) are a
second fine-tune of the same base with four planted differences. Both are ordinary Hugging Face folders that load
with ``TransformerBridge.boot_transformers(path)``. ``helpers.builders.toy_pair`` builds them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import MissingAssetError
from ..registry import ASSETS

TOY_PAIR_NAME = "toy"
PACKAGED_TOY_PAIR = ASSETS / "toy_pair"
PACKAGED_ORGANISMS = ASSETS / "toy_organisms"
PACKAGED_CROSS_ARCH = ASSETS / "cross_arch_llama"
PACKAGED_NARROW = ASSETS / "toy_narrow"


def toy_pair_path() -> Path:
    """Folder holding ``base/`` and ``chat/`` of the toy pair: the packaged one, or ``CROSSCODER_TOY_DIR``.

    Nothing is built here: a missing pair raises ``MissingAssetError`` naming the command that builds it.
    """
    override = os.environ.get("CROSSCODER_TOY_DIR")
    folder = Path(override) if override else PACKAGED_TOY_PAIR
    missing = [role for role in ("base", "chat") if not (folder / role / "config.json").is_file()]
    if missing:
        raise MissingAssetError(
            f"the toy pair is not in {folder} (no {', '.join(missing)} model). Build it with "
            f"`python -m helpers.builders.toy_pair --out {folder}` (about 7 minutes on 2 cores)."
        )
    return folder


def build_report() -> dict:
    """The toy pair's ``build_report.json``: recipe, losses, refusal rates, build time."""
    return json.loads((toy_pair_path() / "build_report.json").read_text())


def organisms_path() -> Path:
    """Folder holding the toy organisms' chat model (``chat/``): the packaged one, or ``CROSSCODER_ORGANISMS_DIR``."""
    override = os.environ.get("CROSSCODER_ORGANISMS_DIR")
    folder = Path(override) if override else PACKAGED_ORGANISMS
    if not (folder / "chat" / "config.json").is_file():
        raise MissingAssetError(f"the toy organisms are not in {folder}. Build them with "
                                f"`python -m helpers.builders.toy_pair --organisms --out {folder}` "
                                "(about 6 minutes on 2 cores).")
    return folder


def cross_arch_llama_path() -> Path:
    """Folder of the cross-architecture demonstration's Llama chat model (``toy:llama``: no planted refusal, its own
    tokenizer); a missing one raises ``MissingAssetError`` naming the command that builds it."""
    folder = PACKAGED_CROSS_ARCH / "chat"
    if not (folder / "config.json").is_file():
        raise MissingAssetError(f"the cross-architecture Llama is not in {folder}. Build it with "
                                f"`python -m helpers.builders.cross_arch --out {PACKAGED_CROSS_ARCH}` (about 5 minutes "
                                "on 2 cores).")
    return folder


def narrow_organism_path(name: str) -> Path:
    """Folder of the narrow organism ``name`` (``helpers.toy.narrow``; ``toy:narrow/NAME``): the packaged one, or one
    under ``CROSSCODER_NARROW_DIR``; a missing one raises ``MissingAssetError`` naming the command that builds it."""
    override = os.environ.get("CROSSCODER_NARROW_DIR")
    folder = (Path(override) if override else PACKAGED_NARROW) / name
    if not (folder / "config.json").is_file():
        raise MissingAssetError(f"the narrow organism {name!r} is not in {folder}. Build the narrow organisms with "
                                f"`python -m helpers.builders.narrow --out {folder.parent}` (about 8 minutes on 2 "
                                "cores).")
    return folder


def narrow_build_report() -> dict:
    """The narrow organisms' ``build_report.json`` (``helpers.builders.narrow``): recipe, losses, greedy rates."""
    path = (Path(os.environ.get("CROSSCODER_NARROW_DIR") or PACKAGED_NARROW)) / "build_report.json"
    if not path.is_file():
        raise MissingAssetError(f"no narrow organisms' build report at {path}. Build them with "
                                f"`python -m helpers.builders.narrow --out {path.parent}`.")
    return json.loads(path.read_text())
