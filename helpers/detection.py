"""Which latents carry a behaviour: AUROC at the response position, and where latents fire.

- ``response_activations``: every latent's activation at the last token of each prompt (for chat
  prompts ending in ``Assistant:``, the position where the model decides how to answer).
- ``auroc``: how well each latent's activation separates positive from negative prompts (exact, ties
  counted half, the Mann-Whitney form).
- ``encode_tokens`` / ``encode_positions`` / ``scan_latents`` / ``top_activations`` / ``template_mask``: latent
  activations over token batches, each latent's strongest positions, and which positions are
  chat-template tokens.
- ``probe_auroc_by_site``: where a behaviour is linearly readable, per hook point and model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from .buffer import harvest
from .crosscoder import CrossCoder
from .data import prompts_by_length
from .models import ModelPair

TEMPLATE_MARKERS = ("User:", "\nAssistant:")


@torch.no_grad()
def encode_tokens(pair: ModelPair, crosscoder: CrossCoder, tokens: torch.Tensor) -> torch.Tensor:
    """Latent activations ``[batch, seq, d_hidden]`` of tokens ``[batch, seq]`` at the crosscoder's hook.

    Position 0 is zeroed when it holds BOS: the crosscoder was trained without BOS activations, whose
    norms are outliers.
    """
    hook_point = crosscoder.cfg.hook_point or pair.hook_point
    activations = harvest(pair.models, tokens, hook_point)  # [batch, seq, n_models, d_model]
    bos_id = pair.tokenizer.bos_token_id
    return encode_positions(crosscoder, activations, None if bos_id is None else tokens[:, 0] == bos_id)


@torch.no_grad()
def encode_positions(crosscoder: CrossCoder, activations: torch.Tensor,
                     first_is_bos: torch.Tensor | None = None) -> torch.Tensor:
    """Latent activations ``[batch, seq, d_hidden]`` of activations ``[batch, seq, n_models, d_model]``.

    Position 0 is zeroed in the rows where ``first_is_bos`` (bool ``[batch]``; all rows if None).
    """
    batch, seq = activations.shape[:2]
    latents = crosscoder.encode(activations.flatten(0, 1).to(crosscoder.W_enc.device)).view(batch, seq, -1)
    if first_is_bos is None:
        latents[:, 0] = 0
    else:
        latents[:, 0] *= (~first_is_bos).to(latents.device, latents.dtype)[:, None]
    return latents


@torch.no_grad()
def response_activations(pair: ModelPair, crosscoder: CrossCoder, prompts: Sequence[str]) -> torch.Tensor:
    """Every latent's activation at the last token of each prompt, ``[n_prompts, d_hidden]``.

    Prompts of equal token length run as one batch, so no padding enters the models.
    """
    result = torch.zeros(len(prompts), crosscoder.cfg.d_hidden)
    for indices, tokens in prompts_by_length(pair.tokenizer, prompts, pair.device):
        result[indices] = encode_tokens(pair, crosscoder, tokens)[:, -1].float().cpu()
    return result


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of each column of ``scores`` ``[n, n_latents]`` for bool ``labels`` ``[n]``.

    Exact: the probability that a positive outscores a negative, ties counted half. Returns ``[n_latents]``.
    """
    labels = torch.as_tensor(labels, dtype=torch.bool).flatten()
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores have {scores.shape[0]} rows but there are {labels.shape[0]} labels")
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc needs both positive and negative examples")
    columns = scores.float().T.contiguous()  # [n_latents, n]
    ordered = columns.sort(dim=1).values
    below = torch.searchsorted(ordered, columns, right=False)
    at_or_below = torch.searchsorted(ordered, columns, right=True)
    ranks = below + (at_or_below - below + 1) / 2  # average 1-based ranks
    positive_rank_sum = ranks[:, labels.to(ranks.device)].sum(dim=1)
    return (positive_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def template_mask(tokens: torch.Tensor, tokenizer, markers: Sequence[str] = TEMPLATE_MARKERS) -> torch.Tensor:
    """Bool ``[batch, seq]``: which tokens belong to a chat-template marker (``User:``, ``\\nAssistant:``)."""
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for marker in markers:
        pattern = torch.tensor(tokenizer(marker, add_special_tokens=False)["input_ids"], device=tokens.device)
        width = pattern.numel()
        if width == 0 or width > tokens.shape[1]:
            continue
        windows = tokens.unfold(1, width, 1)  # [batch, seq - width + 1, width]
        starts = (windows == pattern).all(-1)
        for offset in range(width):
            mask[:, offset:offset + starts.shape[1]] |= starts
    return mask


@torch.no_grad()
def scan_latents(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                 latents: Sequence[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """One pass over token batches ``[batch, seq]`` of one sequence length, for the chosen latents.

    Yields ``(tokens [batch, seq], activations [batch * seq, L], offset)`` on the CPU, where ``offset``
    is the flat index (``row * seq + position`` over all rows so far) of the batch's first token.
    """
    latent_ids = torch.as_tensor(list(latents), dtype=torch.long)
    n_rows, seq_len = 0, None
    for tokens in token_batches:
        seq_len = seq_len or tokens.shape[1]
        if tokens.shape[1] != seq_len:
            raise ValueError(f"token batches must share one sequence length, got {tokens.shape[1]} and {seq_len}")
        acts = encode_tokens(pair, crosscoder, tokens.to(pair.device))[..., latent_ids.to(crosscoder.W_enc.device)]
        yield tokens.cpu(), acts.flatten(0, 1).float().cpu(), n_rows * seq_len
        n_rows += tokens.shape[0]


def top_activations(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                    latents: Sequence[int], n_top: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each latent's ``n_top`` strongest activations over a stream of token batches ``[batch, seq]``.

    Returns ``(values [L, n_top], positions [L, n_top, 2], tokens [n_rows, seq])``: activation values in
    descending order, their ``(row, position)`` in the concatenated ``tokens``. Slots a latent never
    filled have value 0.
    """
    values = torch.zeros(len(latents), n_top)
    flat_positions = torch.zeros(len(latents), n_top, dtype=torch.long)
    seen_rows: list[torch.Tensor] = []
    for tokens, acts, offset in scan_latents(pair, crosscoder, token_batches, latents):
        candidates = torch.cat([values, acts.T], dim=1)
        candidate_positions = torch.cat(
            [flat_positions, (torch.arange(acts.shape[0]) + offset).expand(len(latents), -1)], dim=1)
        values, order = candidates.topk(n_top, dim=1)
        flat_positions = candidate_positions.gather(1, order)
        seen_rows.append(tokens)
    if not seen_rows:
        raise ValueError("top_activations got no token batches")
    seq_len = seen_rows[0].shape[1]
    positions = torch.stack([flat_positions // seq_len, flat_positions % seq_len], dim=-1)
    return values, positions, torch.cat(seen_rows)


def template_share(values: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor, tokenizer) -> torch.Tensor:
    """Per latent, the share of its (non-zero) top activations that sit on chat-template tokens, ``[L]``.

    Takes the output of ``top_activations``; NaN for a latent that never fired.
    """
    on_template = template_mask(tokens, tokenizer)[positions[..., 0], positions[..., 1]]  # [L, n_top]
    fired = values > 0
    return (on_template & fired).sum(1).float() / fired.sum(1).float()


@torch.no_grad()
def last_token_activations(pair: ModelPair, prompts: Sequence[str],
                           hook_points: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each model's activation at the last token of each prompt, per hook.

    Returns ``{hook: [n_prompts, n_models, d_model]}``.
    """
    result = {hook: torch.zeros(len(prompts), len(pair.models), pair.d_model) for hook in hook_points}
    for indices, tokens in prompts_by_length(pair.tokenizer, prompts, pair.device):
        for m, model in enumerate(pair.models):
            _, cache = model.run_with_cache(tokens, names_filter=list(hook_points))
            for hook in hook_points:
                result[hook][indices, m] = cache[hook][:, -1].float().cpu()
    return result


def probe_auroc_by_site(pair: ModelPair, fit_prompts: Sequence[str], fit_labels: Sequence[bool],
                        test_prompts: Sequence[str], test_labels: Sequence[bool], hook_points: Sequence[str]):
    """Where a behaviour is linearly readable: per hook point and model, the held-out AUROC of a
    difference-of-means probe (fitted on ``fit_prompts``) at the last prompt token.

    Returns a pandas DataFrame, one row per hook point, one column per model.
    """
    import pandas as pd

    fit_y = torch.as_tensor(fit_labels, dtype=torch.bool)
    test_y = torch.as_tensor(test_labels, dtype=torch.bool)
    fit = last_token_activations(pair, fit_prompts, hook_points)
    test = last_token_activations(pair, test_prompts, hook_points)
    rows = {}
    for hook in hook_points:
        direction = fit[hook][fit_y].mean(0) - fit[hook][~fit_y].mean(0)  # [n_models, d_model]
        scores = torch.einsum("pmd,md->pm", test[hook], direction)
        rows[hook] = auroc(scores, test_y).tolist()
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(pair.names))
