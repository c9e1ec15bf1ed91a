"""Logit-difference mining: the tokens whose chat - base logit rises most, counted over many positions.

As science-of-finetuning/diffing-toolkit's Diff Mining (``src/diffing/methods/diff_mining``, ordering
``top_k_occurring`` with the ``logits`` extraction): at every position the ``top_k`` tokens of
``logits_chat - logits_base`` are taken; a token's score is the share of positions (in %) at which it is among
them, reported with its mean logit difference over all positions; tokens made only of punctuation and whitespace
are filtered out (the toolkit's ``filter_pure_punctuation``). Positions are every token of the given rows but BOS.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import torch
from tqdm.auto import tqdm

from ..activations.models import ModelPair
from ..validation import instance, positive_int

_PUNCTUATION_OR_SPACE = set(string.punctuation + string.whitespace)


def is_punctuation_or_space(text: str) -> bool:
    """Whether a decoded token holds nothing but punctuation and whitespace (the toolkit's filter)."""
    return all(character in _PUNCTUATION_OR_SPACE for character in text)


@torch.no_grad()
def logit_diff_mining(pair: ModelPair, token_batches: Iterable[torch.Tensor], top_k: int = 100, n: int = 50,
                      filter_punctuation: bool = True, pad_id: int | None = None, progress: bool = True):
    """The ``n`` tokens most often among each position's ``top_k`` largest ``chat - base`` logit differences over
    ``token_batches`` (``[batch, seq]`` each, BOS first; the BOS position is skipped, and so is every position
    holding ``pad_id``, for right-padded rows): a pandas DataFrame with ``token``, ``token_id``, ``occurrence`` (% of
    positions) and ``mean_logit_diff``, most frequent first."""
    import pandas as pd

    instance("pair", pair, ModelPair)
    vocab = int(pair.models[0].cfg.d_vocab)
    positive_int("top_k", top_k, maximum=vocab)
    positive_int("n", n)
    counts = torch.zeros(vocab, dtype=torch.long)
    total = torch.zeros(vocab, dtype=torch.float64)
    positions = 0
    for tokens in tqdm(token_batches, desc="logit differences", disable=not progress):
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError("token_batches must hold token tensors [batch, seq >= 2] (BOS first)")
        tokens = tokens.to(pair.device)
        difference = (pair.models[1](tokens) - pair.models[0](tokens))[:, 1:].float().flatten(0, 1).cpu()
        if pad_id is not None:
            difference = difference[tokens[:, 1:].flatten().cpu() != pad_id]
        counts += torch.bincount(difference.topk(top_k, dim=-1).indices.flatten(), minlength=vocab)
        total += difference.double().sum(0)
        positions += difference.shape[0]
    if positions == 0:
        raise ValueError("logit_diff_mining got no tokens")
    order = counts.argsort(descending=True, stable=True).tolist()
    rows = []
    for token_id in order:
        text = pair.tokenizer_of(1).decode([token_id])
        if counts[token_id] == 0 or len(rows) == n:
            break
        if filter_punctuation and is_punctuation_or_space(text):
            continue
        rows.append({"token": text, "token_id": token_id, "occurrence": 100.0 * counts[token_id].item() / positions,
                     "mean_logit_diff": total[token_id].item() / positions})
    return pd.DataFrame(rows)
