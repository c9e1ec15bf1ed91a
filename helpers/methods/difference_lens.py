"""The Activation Difference Lens (ADL): what a fine-tune writes into the residual stream of *ordinary* text.

Minder et al., "Narrow Finetuning Leaves Clearly Readable Traces in Activation Differences" (arXiv 2510.13900),
as science-of-finetuning/diffing-toolkit implements it (``src/diffing/methods/activation_difference_lens``):

- the mean over text samples of ``chat - base`` activations at each of the first ``n`` positions, at one site
  (the toolkit's default: the middle layer), ``[n_positions, d_model]``;
- read through the chat model's logit lens: ``softmax(W_U · ln_final(v))`` for the difference ``v`` and for
  ``-v`` (``diffing.utils.model.logit_lens``: the final norm, then the unembedding, no soft-capping);
- used as a steering vector, added to a model's activations at the site
  (``helpers.analysis.steering.vector_logits_fn``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..activations.models import ModelPair
from ..activations.sites import harvest
from ..analysis.steering import vector_logits_fn
from ..validation import instance, positive_int


@dataclass
class DifferenceLens:
    """``mean_difference [n_positions, d_model]``: mean ``chat - base`` activation per position at ``hook_point``
    over ``n_sequences`` text samples (position 0 is BOS)."""

    mean_difference: torch.Tensor
    hook_point: str
    n_sequences: int

    def logit_lens(self, pair: ModelPair, position: int, k: int = 20, model_index: int = 1):
        """The ``k`` tokens the difference at ``position`` promotes (and, for ``-v``, suppresses) through model
        ``model_index``'s final norm and unembedding (the chat model's by default): a pandas DataFrame with
        ``token`` / ``prob`` for ``+v`` and ``token_negative`` / ``prob_negative`` for ``-v``."""
        import pandas as pd

        probs = lens_probabilities(pair.models[model_index], self.mean_difference[position])  # [2, vocab]
        top = probs.topk(k, dim=-1)
        decode = pair.tokenizer.convert_ids_to_tokens
        return pd.DataFrame({"token": decode(top.indices[0].tolist()), "prob": top.values[0].tolist(),
                             "token_negative": decode(top.indices[1].tolist()),
                             "prob_negative": top.values[1].tolist()})

    def steering_fn(self, pair: ModelPair, position: int, strength: float, model_index: int = 0):
        """Model ``model_index`` (the base model by default) with ``strength`` times the difference at
        ``position`` added at every position of the site: a ``LogitsFn`` for ``greedy_continuations``."""
        return vector_logits_fn(pair, self.mean_difference[position], strength, self.hook_point, model_index)


@torch.no_grad()
def lens_probabilities(model, vector: torch.Tensor) -> torch.Tensor:
    """``softmax(W_U · ln_final(±vector))`` for ``vector [d_model]``: ``[2, vocab]`` (row 0: ``+v``, 1: ``-v``)."""
    signed = torch.stack([vector, -vector]).to(next(model.parameters()).device, next(model.parameters()).dtype)
    return model.unembed(model.ln_final(signed)).float().softmax(dim=-1).cpu()


@torch.no_grad()
def activation_difference_lens(pair: ModelPair, token_batches: Iterable[torch.Tensor], n_positions: int = 8,
                               hook_point: str | None = None, progress: bool = True) -> DifferenceLens:
    """The mean ``chat - base`` activation at each of the first ``n_positions`` positions of the text samples in
    ``token_batches`` (``[batch, seq >= n_positions]`` each, starting with BOS), at ``hook_point`` (default:
    the pair's site)."""
    instance("pair", pair, ModelPair)
    positive_int("n_positions", n_positions)
    hook_point = hook_point or pair.hook_point
    total, count = None, 0
    for tokens in tqdm(token_batches, desc="activation differences", disable=not progress):
        if tokens.shape[1] < n_positions:
            raise ValueError(f"sequences of {tokens.shape[1]} tokens are shorter than n_positions={n_positions}")
        acts = harvest(pair.models[:2], tokens[:, :n_positions], hook_point).float()  # [batch, n, 2, d_model]
        difference = (acts[:, :, 1] - acts[:, :, 0]).sum(0).cpu()
        total = difference if total is None else total + difference
        count += tokens.shape[0]
    if total is None:
        raise ValueError("activation_difference_lens got no tokens")
    return DifferenceLens(mean_difference=total / count, hook_point=hook_point, n_sequences=count)
