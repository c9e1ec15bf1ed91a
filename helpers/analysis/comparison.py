"""Crosscoders side by side on one pair: the same activations, the same prompts, one row each.

``compare_crosscoders`` harvests ``n_tokens`` activations once and scores every crosscoder on them: L0,
explained variance per model, dead latents, the taxonomy's chat-only count, how many of those survive
Latent Scaling as chat-specific (the paper's criterion), and, on the toy pair, the best AUROC of any
latent for the planted refusal (``planted_detectors``).
"""

from __future__ import annotations

import time

from ..activations.diff import check_compatible
from ..activations.models import ModelPair
from ..crosscoder.model import CrossCoder
from ..training.recipes import activation_batches
from .detection import planted_detectors
from .evals import reconstruction_metrics
from .norms import latent_statistics, latent_table
from .scaling import latent_scaling, scaling_flags


def compare_crosscoders(pair: ModelPair, crosscoders: dict[str, CrossCoder], n_tokens: int = 50_000,
                        seq_len: int = 128, planted: bool = True):
    """One row per crosscoder (a pandas DataFrame indexed by name), measured on the same activations."""
    import pandas as pd

    if not isinstance(crosscoders, dict) or not crosscoders:
        raise ValueError(f"crosscoders must be a non-empty {{name: CrossCoder}} dict, got {crosscoders!r:.80}")
    for crosscoder in crosscoders.values():
        check_compatible(crosscoder, pair)
    batches = list(activation_batches(pair, n_tokens, seq_len=seq_len, seed=5))
    rows = {}
    for name, crosscoder in crosscoders.items():
        started = time.perf_counter()
        metrics = reconstruction_metrics(crosscoder, batches, progress=False)
        table = latent_table(crosscoder, latent_statistics(crosscoder, batches))
        chat_only = table.index[(table["class"] == "chat-only") & (table["frequency"] > 0)].tolist()
        specific = 0
        if chat_only:
            scaling = latent_scaling(crosscoder, batches, chat_only, progress=False)
            specific = int(scaling_flags(scaling, classes=table["class"])["chat_specific"].sum())
        row = {"variant": crosscoder.cfg.variant, "activation": crosscoder.cfg.activation, "L0": metrics.l0,
               "FVE base": metrics.per_model.loc["base", "explained_variance"],
               "FVE chat": metrics.per_model.loc["chat", "explained_variance"],
               "dead fraction": metrics.dead_fraction, "chat-only": len(chat_only), "chat-specific": specific}
        if planted:
            detectors = planted_detectors(pair, crosscoder, table)
            best = int(detectors.index[0])
            row |= {"best planted AUROC": float(detectors.loc[best, "auroc"]), "planted latent": best,
                    "its class": detectors.loc[best, "class"]}
        rows[name] = row | {"seconds": time.perf_counter() - started}
    return pd.DataFrame.from_dict(rows, orient="index")
