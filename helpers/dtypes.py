"""Dtype names accepted wherever a user names a dtype (configs, buffers, caches)."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(name: str, what: str = "dtype") -> torch.dtype:
    """The torch dtype called ``name``; a ``ValueError`` naming ``what`` and the accepted names otherwise."""
    if name not in DTYPES:
        raise ValueError(f"{what} must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def canonical_dtype_name(name: str) -> str:
    """``bf16`` -> ``bfloat16`` and so on: one spelling per dtype (for fingerprints and configs)."""
    return str(parse_dtype(name)).removeprefix("torch.")
