"""A model run with a crosscoder's latents ablated, or with the crosscoder's reconstruction spliced in: logits
functions for generation (refusal rates under an intervention) that decode with a KV cache.

Both encode every model's activation at the crosscoder's site jointly, position by position, so each model of
the pair runs alongside the one whose logits are returned (``EditedRun(..., reads_all=True)``). Position 0 is
left as it is where it holds BOS (the crosscoder was trained without BOS activations), as in
``splice_metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..activations.diff import check_compatible
from ..activations.models import ModelPair
from ..activations.runs import EditedRun
from ..crosscoder.model import CrossCoder
from ..validation import positive_int
from .latents import check_latent_ids, encode_run_positions, latent_contributions, run_bos_mask

ABLATION_MODES = ("contribution", "direction")


def ablated_logits_fn(pair: ModelPair, crosscoder: CrossCoder, latents: Sequence[int], model_index: int = 1,
                      mode: str = "contribution") -> EditedRun:
    """``tokens [batch, seq] -> logits [batch, seq, vocab]`` of model ``model_index`` with ``latents`` ablated at
    the hook (an ``EditedRun``).

    ``mode``:

    - ``"contribution"``: subtract the latents' decoder contribution ``f_j d_j`` (every position but BOS);
    - ``"direction"``: where any of the latents fires, project the activation off the span of their
      decoder directions, removing all of it, including what the reconstruction error holds (an L1
      crosscoder's activations are shrunk, so its error often carries part of a latent's direction).
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode must be one of {ABLATION_MODES}, got {mode!r}")
    hook_point = check_compatible(crosscoder, pair)
    ids = check_latent_ids(crosscoder, latents).tolist()
    positive_int("model_index", model_index, minimum=0, maximum=len(pair.models) - 1)
    directions = crosscoder.decoder_vectors(normalized=False)[ids, model_index].detach().float()  # [L, d_model]
    basis = torch.linalg.qr(directions.T).Q.T  # orthonormal rows spanning the directions
    bos_id = pair.tokenizer.bos_token_id

    def ablate(activation: torch.Tensor, activations: torch.Tensor, tokens: torch.Tensor, start: int) -> torch.Tensor:
        codes = encode_run_positions(crosscoder, activations, tokens, start, bos_id)
        x = activations[:, :, model_index]
        if mode == "contribution":
            return x - latent_contributions(crosscoder, codes, ids)[:, :, model_index].to(x.device)
        fires = (codes[..., ids] > 0).any(-1, keepdim=True).to(x.device)  # [batch, new, 1]
        on_device = basis.to(x.device)
        return x - fires * ((x @ on_device.T) @ on_device)

    return EditedRun(pair.models, model_index, hook_point, ablate, reads_all=True)


def spliced_logits_fn(pair: ModelPair, crosscoder: CrossCoder, model_index: int = 1) -> EditedRun:
    """``tokens [batch, seq] -> logits [batch, seq, vocab]`` of model ``model_index`` running on the crosscoder's
    reconstruction of its activation at the hook (from every model's activation, encoded jointly), BOS kept as
    it is: what ``splice_metrics`` scores, as a model to generate with (an ``EditedRun``)."""
    hook_point = check_compatible(crosscoder, pair)
    positive_int("model_index", model_index, minimum=0, maximum=len(pair.models) - 1)
    bos_id = pair.tokenizer.bos_token_id

    def splice(activation: torch.Tensor, activations: torch.Tensor, tokens: torch.Tensor, start: int) -> torch.Tensor:
        codes = encode_run_positions(crosscoder, activations, tokens, start, bos_id)
        batch, new = codes.shape[:2]
        reconstruction = crosscoder.decode(codes.flatten(0, 1)).view(batch, new, -1, activation.shape[-1])
        bos = run_bos_mask(tokens, start, bos_id).to(activation.device)[..., None]
        return torch.where(bos, activation, reconstruction[:, :, model_index].to(activation.device, activation.dtype))

    return EditedRun(pair.models, model_index, hook_point, splice, reads_all=True)
