"""Decoder-geometry analysis of a crosscoder: norms, cosines, the per-latent table and the taxonomy.

Conventions (model A = index 0 = base, model B = index 1 = chat):

- ``relative_norm = ||d_B|| / (||d_A|| + ||d_B||)``, the replication's: 0 = base-only, 0.5 = shared,
  1 = chat-only.
- ``delta_norm = ((||d_B|| - ||d_A||) / max(||d_A||, ||d_B||) + 1) / 2``, Minder et al.'s: the same
  0 / 0.5 / 1 landmarks but spread differently in between (a latent whose chat decoder is twice the
  base one has relative norm 0.67 and delta norm 0.75).

Norms are taken in the crosscoder's working (normalised) space, folded or not; cosines do not depend on
the space (each model's vectors are only rescaled by a constant).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ..crosscoder.model import CrossCoder
from ..validation import instance, positive_int

CLASSES = ("shared", "base-only", "chat-only", "dead", "unclassified")


def check_models(crosscoder: CrossCoder, model_a: int, model_b: int) -> None:
    """``crosscoder`` a CrossCoder, and ``model_a`` / ``model_b`` two different indices of its models."""
    instance("crosscoder", crosscoder, CrossCoder)
    last = crosscoder.cfg.n_models - 1
    positive_int("model_a", model_a, minimum=0, maximum=last)
    positive_int("model_b", model_b, minimum=0, maximum=last)
    if model_a == model_b:
        raise ValueError(f"model_a and model_b must differ, got {model_a} for both")


@torch.no_grad()
def relative_norms(crosscoder: CrossCoder, model_a: int = 0, model_b: int = 1) -> torch.Tensor:
    """``||d_B|| / (||d_A|| + ||d_B||)`` per latent, ``[d_hidden]``; NaN where both norms are 0."""
    check_models(crosscoder, model_a, model_b)
    norms = crosscoder.decoder_norms().float()
    a, b = norms[:, model_a], norms[:, model_b]
    return b / (a + b)


@torch.no_grad()
def delta_norms(crosscoder: CrossCoder, model_a: int = 0, model_b: int = 1) -> torch.Tensor:
    """Minder et al.'s ``((||d_B|| - ||d_A||) / max(||d_A||, ||d_B||) + 1) / 2``, ``[d_hidden]``."""
    check_models(crosscoder, model_a, model_b)
    norms = crosscoder.decoder_norms().float()
    a, b = norms[:, model_a], norms[:, model_b]
    return ((b - a) / torch.maximum(a, b) + 1) / 2


@torch.no_grad()
def decoder_cosines(crosscoder: CrossCoder, model_a: int = 0, model_b: int = 1) -> torch.Tensor:
    """Cosine between each latent's decoder vectors in the two models, ``[d_hidden]``."""
    check_models(crosscoder, model_a, model_b)
    vectors = crosscoder.decoder_vectors(normalized=True).float()
    return torch.nn.functional.cosine_similarity(vectors[:, model_a], vectors[:, model_b], dim=-1)


@torch.no_grad()
def encoder_cosines(crosscoder: CrossCoder, model_a: int = 0, model_b: int = 1) -> torch.Tensor:
    """Cosine between each latent's encoder vectors in the two models, ``[d_hidden]``."""
    check_models(crosscoder, model_a, model_b)
    w_enc = crosscoder.W_enc.float()  # [n_models, d_model, d_hidden]
    return torch.nn.functional.cosine_similarity(w_enc[model_a], w_enc[model_b], dim=0)


@dataclass
class LatentStatistics:
    """Per-latent activation statistics over ``n_tokens`` tokens: each tensor is ``[d_hidden]``."""

    n_tokens: int
    frequency: torch.Tensor
    max_activation: torch.Tensor
    mean_active_activation: torch.Tensor


@torch.no_grad()
def latent_statistics(crosscoder: CrossCoder, activation_batches: Iterable[torch.Tensor]) -> LatentStatistics:
    """Firing frequency, max activation and mean activation when active, in one pass over raw
    activation batches ``[batch, n_models, d_model]`` (e.g. from ``ShufflingBuffer.next_batch``)."""
    d_hidden = crosscoder.cfg.d_hidden
    device = crosscoder.W_enc.device
    fired = torch.zeros(d_hidden, device=device)
    total = torch.zeros(d_hidden, device=device)
    maximum = torch.zeros(d_hidden, device=device)
    n_tokens = 0
    for batch in activation_batches:
        latents = crosscoder.encode(batch.to(device)).float()
        fired += (latents > 0).float().sum(0)
        total += latents.sum(0)
        maximum = torch.maximum(maximum, latents.max(0).values)
        n_tokens += latents.shape[0]
    if n_tokens == 0:
        raise ValueError("latent_statistics got no activations")
    return LatentStatistics(n_tokens=n_tokens, frequency=(fired / n_tokens).cpu(), max_activation=maximum.cpu(),
                            mean_active_activation=(total / fired.clamp(min=1)).cpu())


@dataclass(frozen=True)
class Thresholds:
    """Taxonomy thresholds on ``delta_norm`` (defaults: Minder et al. 2025).

    chat-only ``>= chat_only``; base-only ``<= base_only``; shared within ``shared`` (inclusive);
    dead = never fired in the statistics' tokens; everything else is unclassified.
    ``Thresholds.replication()`` widens the shared band to the replication's 0.3 to 0.7.
    """

    chat_only: float = 0.9
    base_only: float = 0.1
    shared: tuple[float, float] = (0.4, 0.6)

    def __post_init__(self) -> None:
        low, high = self.shared
        if not 0 <= self.base_only < low <= high < self.chat_only <= 1:
            raise ValueError(f"thresholds must satisfy 0 <= base_only < shared low <= shared high < chat_only <= 1, "
                             f"got {self}")

    @classmethod
    def replication(cls) -> Thresholds:
        return cls(shared=(0.3, 0.7))


def latent_table(crosscoder: CrossCoder, statistics: LatentStatistics | None = None, model_a: int = 0,
                 model_b: int = 1, thresholds: Thresholds = Thresholds()):
    """One row per latent (a pandas DataFrame indexed by latent id).

    Columns: ``norm_base``, ``norm_chat``, ``relative_norm``, ``delta_norm``, ``decoder_cosine``,
    ``encoder_cosine``, ``class`` and, with ``statistics``, ``frequency``, ``max_activation`` and
    ``mean_active_activation``. Without statistics, dead means a zero decoder in both models.
    """
    import pandas as pd

    check_models(crosscoder, model_a, model_b)
    if statistics is not None:
        instance("statistics", statistics, LatentStatistics)
        if statistics.frequency.shape[0] != crosscoder.cfg.d_hidden:
            raise ValueError(f"statistics cover {statistics.frequency.shape[0]} latents, the crosscoder has "
                             f"{crosscoder.cfg.d_hidden}: were they gathered with another crosscoder?")
    instance("thresholds", thresholds, Thresholds)
    norms = crosscoder.decoder_norms().float().detach().cpu()
    table = pd.DataFrame({
        "norm_base": norms[:, model_a].numpy(),
        "norm_chat": norms[:, model_b].numpy(),
        "relative_norm": relative_norms(crosscoder, model_a, model_b).cpu().numpy(),
        "delta_norm": delta_norms(crosscoder, model_a, model_b).cpu().numpy(),
        "decoder_cosine": decoder_cosines(crosscoder, model_a, model_b).cpu().numpy(),
        "encoder_cosine": encoder_cosines(crosscoder, model_a, model_b).cpu().numpy(),
    })
    table.index.name = "latent"
    if statistics is not None:
        table["frequency"] = statistics.frequency.numpy()
        table["max_activation"] = statistics.max_activation.numpy()
        table["mean_active_activation"] = statistics.mean_active_activation.numpy()
    table["class"] = classify(table, thresholds)
    return table


def classify(table, thresholds: Thresholds = Thresholds()):
    """The class of each latent of a ``latent_table``: an array of strings from ``CLASSES``, ``[d_hidden]``."""
    import numpy as np

    delta = table["delta_norm"].to_numpy()
    if "frequency" in table:
        dead = table["frequency"].to_numpy() == 0
    else:
        dead = (table["norm_base"].to_numpy() == 0) & (table["norm_chat"].to_numpy() == 0)
    low, high = thresholds.shared
    labels = np.select(
        [dead, delta >= thresholds.chat_only, delta <= thresholds.base_only, (delta >= low) & (delta <= high)],
        ["dead", "chat-only", "base-only", "shared"],
        default="unclassified",
    )
    return labels


def taxonomy_counts(table) -> dict[str, int]:
    """``{class: number of latents}`` for every class in ``CLASSES`` (zeros included)."""
    if "class" not in getattr(table, "columns", ()):
        raise TypeError(f"table must be a latent_table (a DataFrame with a 'class' column), got {type(table).__name__}")
    counts = table["class"].value_counts()
    return {name: int(counts.get(name, 0)) for name in CLASSES}


def chat_leaning_latents(table, n_fallback: int = 20) -> list[int]:
    """The chat-only latents of a ``latent_table`` that fired, most chat-leaning first (by delta norm, then
    frequency). A crosscoder of two close models can have none: then the ``n_fallback`` most chat-leaning
    latents that fired stand in for them, and a line says so."""
    fired = table[table["frequency"] > 0] if "frequency" in table else table
    chosen = fired[fired["class"] == "chat-only"]
    if chosen.empty:
        chosen = fired.nlargest(n_fallback, "delta_norm")
        print(f"no latent passes the chat-only threshold; using the {len(chosen)} most chat-leaning latents that "
              f"fired instead (delta norm {chosen['delta_norm'].min():.3f} to {chosen['delta_norm'].max():.3f})")
    return chosen.sort_values(["delta_norm", "frequency"] if "frequency" in chosen else ["delta_norm"],
                              ascending=False).index.tolist()
