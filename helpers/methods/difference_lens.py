"""The Activation Difference Lens (ADL): what a fine-tune writes into the residual stream of *ordinary* text.

Minder et al., "Narrow Finetuning Leaves Clearly Readable Traces in Activation Differences" (arXiv 2510.13900),
as science-of-finetuning/diffing-toolkit implements it (``src/diffing/methods/activation_difference_lens``):

- the mean over text samples of ``chat - base`` activations at each of the first ``n`` positions of each document
  (``document_starts``: BOS and the document's first tokens), at one site, ``[n_positions, d_model]``; the
  defaults are the toolkit's: the middle layer (relative layer 0.5 of its config, ``middle_site``) and ``n = 20``
  positions (the paper reads the first five); the scoreboard of notebook 08 passes the pair's crosscoder site;
- read through the chat model's logit lens: ``softmax(W_U · ln_final(v))`` for the difference ``v`` and for
  ``-v`` (``diffing.utils.model.logit_lens``: the final norm, then the unembedding, no soft-capping);
- used as a steering vector, added to a model's activations at the site
  (``helpers.analysis.steering.vector_logits_fn``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..activations.models import ModelPair
from ..activations.sites import harvest
from ..analysis.steering import vector_logits_fn
from ..validation import instance, non_empty_strings, positive_int


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
        decode = pair.tokenizer_of(model_index).convert_ids_to_tokens
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


def middle_site(model) -> str:
    """The residual stream after the middle block, ``blocks.{n_layers // 2}.hook_resid_post``: the toolkit's default
    relative layer 0.5 (the output of decoder layer ``int(0.5 * n_layers)``)."""
    return f"blocks.{int(model.cfg.n_layers) // 2}.hook_resid_post"


def document_starts(tokenizer, texts: Sequence[str], n_positions: int = 20) -> torch.Tensor:
    """The first ``n_positions`` tokens of each document, BOS first, ``[n_documents, n_positions]``: what the ADL
    averages over (the start of each document, not a window of a packed stream). Documents with fewer tokens are
    left out; none long enough is a ``ValueError``."""
    texts = non_empty_strings("texts", texts)
    positive_int("n_positions", n_positions, minimum=2)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    heads = [text[: 64 * n_positions] for text in texts]  # enough characters for n_positions tokens, fast
    rows = [(bos + ids)[:n_positions] for ids in tokenizer(heads, add_special_tokens=False)["input_ids"]]
    rows = [row for row in rows if len(row) == n_positions]
    if not rows:
        raise ValueError(f"no document has {n_positions} tokens")
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def activation_difference_lens(pair: ModelPair, token_batches: Iterable[torch.Tensor], n_positions: int = 20,
                               hook_point: str | None = None, progress: bool = True) -> DifferenceLens:
    """The mean ``chat - base`` activation at each of the first ``n_positions`` positions of the text samples in
    ``token_batches`` (``[batch, seq >= n_positions]`` each, starting with BOS: ``document_starts``), at
    ``hook_point`` (default: the middle layer, ``middle_site``)."""
    instance("pair", pair, ModelPair)
    positive_int("n_positions", n_positions)
    hook_point = hook_point or middle_site(pair.models[0])
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
