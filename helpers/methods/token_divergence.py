"""Per-token KL: where the two models' next-token distributions disagree, token by token.

As science-of-finetuning/diffing-toolkit's ``kl`` method (``src/diffing/methods/kl/method.py``) defines it: at
every position, ``KL(chat || base) = sum_v p_chat(v) (log p_chat(v) - log p_base(v))`` of the distributions over
the next token, in nats. A fine-tune's changes show as the positions (and prompts) where it peaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..activations.data import prompts_by_length
from ..activations.models import ModelPair
from ..activations.sites import check_tokens, kl_divergence, log_probs
from ..validation import non_empty


@dataclass
class TokenKL:
    """``kl [n_sequences, seq]``: KL of the predictions made at each position; ``tokens [n_sequences, seq]``."""

    kl: torch.Tensor
    tokens: torch.Tensor

    def top(self, tokenizer, n: int = 10, context: int = 8):
        """The ``n`` positions with the largest KL, as a pandas DataFrame: the KL, the text up to and including
        the position (``context`` tokens) and the token that actually came next."""
        import pandas as pd

        flat = self.kl[:, :-1].flatten().topk(min(n, self.kl[:, :-1].numel()))
        width = self.kl.shape[1] - 1
        rows = []
        for value, index in zip(flat.values.tolist(), flat.indices.tolist()):
            sequence, position = divmod(index, width)
            window = self.tokens[sequence, max(0, position - context + 1) : position + 1]
            rows.append({"kl": value, "sequence": sequence, "position": position,
                         "context": tokenizer.decode(window), "next": tokenizer.decode(self.tokens[sequence,
                                                                                                  position + 1])})
        return pd.DataFrame(rows)


@torch.no_grad()
def token_kl(pair: ModelPair, token_batches: Iterable[torch.Tensor], progress: bool = True) -> TokenKL:
    """``KL(chat || base)`` at every position of every sequence of ``token_batches`` (``[batch, seq]`` each, of
    one length), over the pair's first two models (base, chat)."""
    kls, all_tokens = [], []
    base, chat = pair.models[0], pair.models[1]
    for tokens in tqdm(token_batches, desc="per-token KL", disable=not progress):
        tokens = check_tokens(base, tokens)
        kls.append(kl_divergence(log_probs(chat(tokens)), log_probs(base(tokens))).float().cpu())
        all_tokens.append(tokens.cpu())
    if not kls:
        raise ValueError("token_kl got no tokens")
    return TokenKL(kl=torch.cat(kls), tokens=torch.cat(all_tokens))


@torch.no_grad()
def prompt_kl(pair: ModelPair, prompts: Sequence[str]) -> torch.Tensor:
    """``KL(chat || base)`` of the next token after each prompt (its last position), ``[n_prompts]``: how much
    the fine-tune changed what comes next, e.g. right after ``Assistant:``."""
    prompts = non_empty("prompts", prompts)
    values = torch.empty(len(prompts))
    for indices, tokens in prompts_by_length(pair.tokenizer, prompts, device=pair.device):
        values[indices] = token_kl(pair, [tokens], progress=False).kl[:, -1]
    return values
