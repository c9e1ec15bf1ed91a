"""diff-SAE: a sparse autoencoder on ``chat - base`` activation differences, whose latents name what fine-tuning
added (or took away).

Aranguri, Drori and Nanda (2025); science-of-finetuning/diffing-toolkit trains it as ``sae_difference``
(``configs/diffing/method/sae_difference.yaml``: target ``difference_ftb`` = fine-tuned minus base, a BatchTopK
SAE, k = 100, expansion factor 2). Here it is a crosscoder with a single "model" whose activation is the
difference: ``DifferenceSource`` turns paired activations ``[n, 2, d_model]`` into ``[n, 1, d_model]``, and
``CrossCoder`` / ``Trainer`` do the rest (the difference is normalised to mean norm ``sqrt(d_model)`` like every
crosscoder input, where the toolkit scales to an RMS of 100; the scale does not change which latents form).
"""

from __future__ import annotations

import torch

from .buffer import ActivationSource
from .crosscoder import CrossCoder
from .data import source_fingerprint
from .recipes import crosscoder_for_site


class DifferenceSource:
    """``chat - base`` of a paired source's activations: ``[n, 1, d_model]`` (models 1 minus 0)."""

    def __init__(self, paired: ActivationSource):
        self.paired = paired

    def next_activations(self, n: int) -> torch.Tensor:
        acts = self.paired.next_activations(n)
        return acts[:, 1:2] - acts[:, 0:1]

    def fingerprint(self) -> dict:
        return {"difference": "chat - base", "of": source_fingerprint(self.paired)}

    def state_dict(self) -> dict:
        return self.paired.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.paired.load_state_dict(state)


def new_diff_sae(model_names: list[str], hook_point: str, source: DifferenceSource, d_hidden: int, k: int = 100,
                 scale_tokens: int = 50_000, **cfg_kwargs) -> CrossCoder:
    """A fresh BatchTopK SAE of ``d_hidden`` latents for the differences ``source`` serves at ``hook_point``,
    normalised from ``scale_tokens`` of them (its one "model" is named ``chat - base``)."""
    name = f"{model_names[1]} - {model_names[0]}"
    return crosscoder_for_site([name], hook_point, source, scale_tokens, d_hidden=d_hidden, activation="batchtopk",
                               k=k, **cfg_kwargs)
