"""Helpers for the crosscoder model-diffing tutorials.

The public API is re-exported here and imported lazily, so ``import helpers`` is cheap; heavy
dependencies (TransformerLens, transformers, plotly) load only when a function that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CrossCoder": "crosscoder",
    "CrossCoderConfig": "crosscoder",
    "CrossCoderLosses": "crosscoder",
    "save": "checkpoints",
    "load": "checkpoints",
    "CheckpointError": "checkpoints",
    "from_pretrained": "releases",
    "push_to_hub": "releases",
    "list_releases": "releases",
    "RELEASES": "releases",
    "Release": "releases",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
