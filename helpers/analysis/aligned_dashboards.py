"""Latent dashboards for a pair whose models have separate tokenizers: each example shows both models' tokens.

Such a crosscoder reads activation pairs only where the two tokenizations end a token at the same character
(``helpers.activations.alignment``), so its latents exist only there. ``gather_aligned_dashboards`` runs both models
on texts, encodes the aligned pairs, and builds the same panels as ``gather_dashboards``: each example is a window of
the first model's tokens (the latent's activation on its aligned tokens, 0 on the others), and under it the second
model's tokens around the same character. Each model's logit effects read its own vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..activations.alignment import harvest_aligned_texts
from ..activations.diff import check_compatible
from ..activations.models import ModelPair
from ..crosscoder.model import CrossCoder
from ..validation import instance, non_empty_strings, positive_int
from .dashboards import Example, LatentDashboard, dashboards_from_firings, token_strings
from .latents import check_latent_ids


@torch.no_grad()
def gather_aligned_dashboards(pair: ModelPair, crosscoder: CrossCoder, texts: Sequence[str], latents: Sequence[int],
                              table=None, n_top: int = 10, per_band: int = 3, context: tuple[int, int] = (12, 4),
                              n_logits: int = 10, n_bins: int = 30, seed: int = 0, texts_per_batch: int = 16,
                              max_chars: int = 2_000, progress: bool = True) -> list[LatentDashboard]:
    """Dashboard data for ``latents`` of a crosscoder on a pair with separate tokenizers, from one pass over
    ``texts`` (each cut to its first ``max_chars`` characters, ``texts_per_batch`` at a time).

    Returns one ``LatentDashboard`` per latent, in order; every example's ``other`` holds the second model's name,
    its tokens around the example's character and which of them is that token (``focus``). ``density`` is per
    aligned pair. The other arguments are ``gather_dashboards``'.
    """
    instance("pair", pair, ModelPair)
    if not pair.separate_tokenizers:
        raise ValueError(f"{pair.name} shares one tokenizer: use gather_dashboards(pair, crosscoder, token_batches, "
                         "latents), which reads every position")
    check_compatible(crosscoder, pair)
    ids = check_latent_ids(crosscoder, latents)
    texts = non_empty_strings("texts", texts)
    positive_int("texts_per_batch", texts_per_batch)
    positive_int("max_chars", max_chars)
    token_rows: list[list[list[int]]] = [[], []]
    positions: list[list[list[int]]] = [[], []]
    fired_latent, fired_row, fired_position, fired_value = [], [], [], []
    for start in tqdm(range(0, len(texts), texts_per_batch), desc="dashboard pass", disable=not progress):
        batch = [text[:max_chars] for text in texts[start:start + texts_per_batch]]
        aligned = harvest_aligned_texts(pair.models, pair.tokenizers, batch, [pair.hook_point] * 2)
        acts = crosscoder.encode(aligned.activations.to(crosscoder.W_enc.device, crosscoder.W_enc.dtype))
        acts = acts[:, ids.to(acts.device)].float().cpu()  # [n_pairs, L]
        pair_row = torch.tensor([len(token_rows[0]) + t for t, where in enumerate(aligned.positions[0])
                                 for _ in where], dtype=torch.long)
        pair_position = torch.tensor([p for where in aligned.positions[0] for p in where], dtype=torch.long)
        which, latent_row = acts.nonzero(as_tuple=True)
        fired_latent.append(latent_row)
        fired_row.append(pair_row[which])
        fired_position.append(pair_position[which])
        fired_value.append(acts[which, latent_row])
        for side in range(2):
            token_rows[side] += aligned.token_rows[side]
            positions[side] += aligned.positions[side]
    n_pairs = sum(len(where) for where in positions[0])
    if n_pairs == 0:
        raise ValueError("the two tokenizations line up nowhere in these texts: no aligned position to show")
    seq_len = max(len(row) for row in token_rows[0])
    pad = pair.tokenizer_of(0).pad_token_id or 0
    all_tokens = torch.tensor([row + [pad] * (seq_len - len(row)) for row in token_rows[0]])
    flat = torch.cat(fired_row) * seq_len + torch.cat(fired_position)
    other_model = pair.names[1]
    other_position = [dict(zip(a, b)) for a, b in zip(positions[0], positions[1])]

    def finish(example: Example) -> None:
        """Trim model 0's window to its text and add model 1's tokens around the same character."""
        keep = len(token_rows[0][example.row]) - (example.position - example.focus)
        example.tokens, example.activations = example.tokens[:keep], example.activations[:keep]
        row = token_rows[1][example.row]
        centre = other_position[example.row][example.position]
        first = max(1 if row[0] == pair.tokenizer_of(1).bos_token_id else 0, centre - context[0])
        example.other = {"model": other_model, "focus": centre - first,
                         "tokens": token_strings(pair.tokenizer_of(1), row[first:centre + context[1] + 1])}

    return dashboards_from_firings(pair, crosscoder, ids, all_tokens, torch.cat(fired_latent), flat,
                                   torch.cat(fired_value), n_pairs, table, n_top, per_band, context, n_logits, n_bins,
                                   seed, finish_example=finish)
