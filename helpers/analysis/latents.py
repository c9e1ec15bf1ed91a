"""A crosscoder's latents on tokens: encoding activations of both models, and scanning a token stream.

- ``encode_positions``: latent activations of harvested activations (BOS position zeroed);
- ``encode_tokens``: both models run to the crosscoder's site, then encoded (``encode_run_positions``: the
  same on the positions an edited run computes);
- ``response_activations``: every latent at the last token of each prompt;
- ``scan_latents``: one pass over a token stream for chosen latents (used by ``top_activations`` and the
  dashboards);
- ``top_activations`` / ``template_mask`` / ``template_share``: each latent's strongest positions and how
  many of them sit on chat-template tokens;
- ``latent_contributions``: what chosen latents add to each model's activation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..activations.data import prompts_by_length
from ..activations.diff import check_compatible
from ..activations.models import ModelPair
from ..activations.sites import harvest
from ..crosscoder.model import CrossCoder
from ..validation import instance, non_empty, positive_int

TEMPLATE_MARKERS = ("User:", "\nAssistant:")


@torch.no_grad()
def encode_positions(crosscoder: CrossCoder, activations: torch.Tensor,
                     first_is_bos: torch.Tensor | None = None) -> torch.Tensor:
    """Latent activations ``[batch, seq, d_hidden]`` of activations ``[batch, seq, n_models, d_model]``.

    Position 0 is zeroed in the rows where ``first_is_bos`` (bool ``[batch]``; all rows if None): the
    crosscoder was trained without BOS activations, whose norms are outliers.
    """
    batch, seq = activations.shape[:2]
    latents = crosscoder.encode(activations.flatten(0, 1).to(crosscoder.W_enc.device)).view(batch, seq, -1)
    if first_is_bos is None:
        latents[:, 0] = 0
    else:
        latents[:, 0] *= (~first_is_bos).to(latents.device, latents.dtype)[:, None]
    return latents


def run_bos_mask(tokens: torch.Tensor, start: int, bos_id: int | None) -> torch.Tensor:
    """Which of the positions ``start..`` of a run's ``tokens [batch, new]`` are a leading BOS, ``[batch, new]``
    bool: position 0 where it holds BOS (in every row for a tokenizer without BOS), nothing later."""
    mask = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    if start == 0:
        mask[:, 0] = True if bos_id is None else tokens[:, 0] == bos_id
    return mask


def encode_run_positions(crosscoder: CrossCoder, activations: torch.Tensor, tokens: torch.Tensor, start: int,
                         bos_id: int | None) -> torch.Tensor:
    """``encode_positions`` for the positions ``start..`` of a run (``activations [batch, new, n_models, d_model]``
    of ``tokens [batch, new]``, as ``helpers.activations.runs.EditedRun`` edits see them), a leading BOS zeroed
    (``run_bos_mask``) as ``encode_tokens`` does."""
    codes = encode_positions(crosscoder, activations, torch.zeros(tokens.shape[0], dtype=torch.bool))
    return codes.masked_fill_(run_bos_mask(tokens, start, bos_id).to(codes.device)[..., None], 0)


@torch.no_grad()
def encode_tokens(pair: ModelPair, crosscoder: CrossCoder, tokens: torch.Tensor) -> torch.Tensor:
    """Latent activations ``[batch, seq, d_hidden]`` of tokens ``[batch, seq]`` at the crosscoder's site
    (which must be the pair's: ``check_compatible``)."""
    activations = harvest(pair.models, tokens, check_compatible(crosscoder, pair))
    bos_id = pair.tokenizer.bos_token_id
    return encode_positions(crosscoder, activations, None if bos_id is None else tokens[:, 0] == bos_id)


@torch.no_grad()
def response_activations(pair: ModelPair, crosscoder: CrossCoder, prompts: Sequence[str]) -> torch.Tensor:
    """Every latent's activation at the last token of each prompt, ``[n_prompts, d_hidden]``.

    Prompts of equal token length run as one batch, so no padding enters the models.
    """
    prompts = non_empty("prompts", prompts)
    check_compatible(crosscoder, pair)
    result = torch.zeros(len(prompts), crosscoder.cfg.d_hidden)
    for indices, tokens in prompts_by_length(pair.tokenizer, prompts, pair.device):
        result[indices] = encode_tokens(pair, crosscoder, tokens)[:, -1].float().cpu()
    return result


@torch.no_grad()
def scan_latents(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                 latents: Sequence[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """One pass over token batches ``[batch, seq]`` of one sequence length, for the chosen latents.

    Yields ``(tokens [batch, seq], activations [batch * seq, L], offset)`` on the CPU, where ``offset``
    is the flat index (``row * seq + position`` over all rows so far) of the batch's first token.
    """
    latent_ids = check_latent_ids(crosscoder, latents)
    n_rows, seq_len = 0, None
    for tokens in token_batches:
        seq_len = seq_len or tokens.shape[1]
        if tokens.shape[1] != seq_len:
            raise ValueError(f"token batches must share one sequence length, got {tokens.shape[1]} and {seq_len}")
        acts = encode_tokens(pair, crosscoder, tokens.to(pair.device))[..., latent_ids.to(crosscoder.W_enc.device)]
        yield tokens.cpu(), acts.flatten(0, 1).float().cpu(), n_rows * seq_len
        n_rows += tokens.shape[0]


def check_latent_ids(crosscoder: CrossCoder, latents: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``latents`` as a 1-D long tensor; a ``ValueError`` if empty or outside ``[0, d_hidden)``."""
    ids = torch.as_tensor(list(latents) if not isinstance(latents, torch.Tensor) else latents).flatten()
    if ids.numel() == 0:
        raise ValueError("at least one latent id is needed")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"latent ids must be integers, got dtype {ids.dtype}")
    d_hidden = crosscoder.cfg.d_hidden
    if ids.min() < 0 or ids.max() >= d_hidden:
        raise ValueError(f"latent ids must lie in [0, {d_hidden}), got {ids.min().item()}..{ids.max().item()}")
    return ids.long()


@dataclass
class TopActivations:
    """Each latent's strongest activations over a token stream.

    Attributes:
        latents: the latent ids, ``[L]``.
        values: activations in descending order, ``[L, n_top]`` (0 where a latent fired fewer times).
        positions: their ``(row, position)`` in ``tokens``, ``[L, n_top, 2]``.
        tokens: every row scanned, ``[n_rows, seq]``.
    """

    latents: list[int]
    values: torch.Tensor
    positions: torch.Tensor
    tokens: torch.Tensor


def top_activations(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                    latents: Sequence[int], n_top: int = 20) -> TopActivations:
    """Each latent's ``n_top`` strongest activations over a stream of token batches ``[batch, seq]``."""
    positive_int("n_top", n_top)
    latents = check_latent_ids(crosscoder, latents).tolist()
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
    return TopActivations(list(latents), values, positions, torch.cat(seen_rows))


def template_mask(tokens: torch.Tensor, tokenizer, markers: Sequence[str] = TEMPLATE_MARKERS) -> torch.Tensor:
    """Bool ``[batch, seq]``: which tokens belong to a chat-template marker (``User:``, ``\\nAssistant:``)."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be an integer tensor [batch, seq], got {shape}")
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


def template_share(top: TopActivations, tokenizer) -> torch.Tensor:
    """Per latent, the share of its (non-zero) top activations that sit on chat-template tokens, ``[L]``;
    NaN for a latent that never fired."""
    instance("top", top, TopActivations)
    on_template = template_mask(top.tokens, tokenizer)[top.positions[..., 0], top.positions[..., 1]]  # [L, n_top]
    fired = top.values > 0
    return (on_template & fired).sum(1).float() / fired.sum(1).float()


def latent_contributions(crosscoder: CrossCoder, codes: torch.Tensor, latents: Sequence[int]) -> torch.Tensor:
    """What ``latents`` add to each model's raw activation: ``[..., n_models, d_model]`` for codes
    ``[..., d_hidden]``."""
    ids = torch.as_tensor(latents, dtype=torch.long, device=codes.device)
    vectors = crosscoder.decoder_vectors(normalized=False)[ids]  # [L, n_models, d_model]
    return torch.einsum("...l,lmd->...md", codes[..., ids].to(vectors.dtype), vectors)
