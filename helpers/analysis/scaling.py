"""Latent Scaling (Minder et al. 2025): how much each model really uses a latent's direction.

For latent ``j`` with activation ``f_ij`` on token ``i`` and a decoder vector ``d`` (by default its *chat*
decoder, used for both models), Latent Scaling fits per model ``m`` the scale ``beta`` minimising
``sum_i || beta * f_ij * d - y_ij^m ||^2``, whose closed form is

    beta = (d . sum_i f_ij y_ij^m) / (||d||^2 * sum_i f_ij^2),

summed over the tokens where the latent fires (elsewhere ``f_ij = 0`` adds nothing). Targets ``y^m``, in
the crosscoder's working (normalised) space, as in the paper's code
(science-of-finetuning/sparsity-artifacts-crosscoders, ``tools/latent_scaler/closed_form.py`` and
``scripts/compute_scalers.py``: ``load_{base,chat}_{activation,error,reconstruction}``):

- ``activation``: the model's activation ``x^m``;
- ``error``: the reconstruction error with the latent's own contribution in model ``m`` put back,
  ``x^m - x_hat^m + f_j d_j^m`` (what is left for this latent to explain);
- ``reconstruction``: the model's **full** reconstruction ``x_hat^m``, the latent's own contribution
  included.

``nu_err = beta_err(base) / beta_err(chat)`` near 0 says the base model's error has nothing for this
direction to explain (no Complete Shrinkage); ``nu_rec = beta_rec(base) / beta_rec(chat)`` near 0 says
the base reconstruction does not carry the direction, i.e. no other latent rebuilds it there (no Latent
Decoupling). A chat-only latent is **chat-specific** when ``nu_err < 0.2`` and ``nu_rec < 0.5``.

All sums are accumulated in one pass over the activations: per batch one encode and one decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..crosscoder.model import CrossCoder
from ..registry import model_roles
from ..validation import real
from .latents import check_latent_ids

TARGETS = ("activation", "error", "reconstruction")
NU_ERR_MAX = 0.2
NU_REC_MAX = 0.5


def closed_form_beta(f: torch.Tensor, d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The module docstring's closed form for one latent: ``argmin_beta sum_i ||beta f_i d - y_i||^2`` for
    activations ``f [n]``, a direction ``d [d_model]`` and targets ``y [n, d_model]``; a 0-d tensor.
    ``latent_scaling`` accumulates the same sums in one pass for many latents at once."""
    return ((f[:, None] * y).sum(0) @ d) / (d.pow(2).sum() * f.pow(2).sum())


@torch.no_grad()
def latent_scaling(
    crosscoder: CrossCoder,
    activation_batches: Iterable[torch.Tensor],
    latents: Sequence[int] | torch.Tensor,
    vector_model: int = 1,
    progress: bool = True,
):
    """``beta`` per latent, model and target, and the ratios ``nu_err`` and ``nu_rec``, in one pass.

    ``activation_batches`` yields raw activations ``[batch, n_models, d_model]``; ``latents`` are the
    latent ids to scale; ``vector_model`` picks whose decoder vector is fitted (chat by default, as in
    the paper). Returns a pandas DataFrame indexed by latent with columns ``beta_{target}_{role}``
    (``beta_error_base``, ...), ``nu_err``, ``nu_rec`` (for two models) and ``n_active`` (tokens on which
    the latent fired). A latent that never fired has NaN betas.
    """
    import pandas as pd

    latent_ids = check_latent_ids(crosscoder, latents)
    n_models = crosscoder.cfg.n_models
    if not 0 <= vector_model < n_models:
        raise ValueError(f"vector_model must index one of the {n_models} models, got {vector_model}")
    roles = model_roles(n_models)
    device = crosscoder.W_dec.device
    latent_ids = latent_ids.to(device)
    own_vectors = crosscoder.decoder_vectors(normalized=True).float()[latent_ids]  # [L, n_models, d_model]
    fitted = own_vectors[:, vector_model]  # [L, d_model]
    # d . d_j^m: how much of the fitted direction the latent's own contribution adds in model m, [L, n_models]
    self_overlap = torch.einsum("ld,lmd->lm", fitted, own_vectors)

    # running sums in float64: one float32 batch sum each, accumulated without drift over millions of tokens
    projected = {target: torch.zeros(len(latent_ids), n_models, device=device, dtype=torch.float64)
                 for target in TARGETS}
    sum_sq = torch.zeros(len(latent_ids), device=device, dtype=torch.float64)
    n_active = torch.zeros(len(latent_ids), device=device)
    n_batches = 0
    for batch in tqdm(activation_batches, desc="latent scaling", disable=not progress):
        x = crosscoder.normalize(batch.to(device).float())  # [batch, n_models, d_model]
        codes = crosscoder.encode(x, normalized=True)
        reconstruction = crosscoder.decode(codes, normalized=True).float()
        f = codes[:, latent_ids].float()  # [batch, L]
        f_sq = f.pow(2).sum(0)
        for target, values in (("activation", x), ("error", x - reconstruction), ("reconstruction", reconstruction)):
            # sum_i f_ij (d_j . y_i^m) = sum over batch of f * (y @ d^T), per model
            projected[target] += torch.einsum("bl,bml->lm", f, torch.einsum("bmd,ld->bml", values, fitted))
        sum_sq += f_sq
        n_active += (f > 0).float().sum(0)
        n_batches += 1
    if n_batches == 0:
        raise ValueError("latent_scaling got no activations")
    # put the latent's own contribution back into the error: sum_i f_ij (d . f_ij d_j^m)
    projected["error"] += self_overlap * sum_sq[:, None]

    denominator = (fitted.pow(2).sum(-1) * sum_sq)[:, None]  # [L, 1]
    table = pd.DataFrame(index=pd.Index(latent_ids.cpu().numpy(), name="latent"))
    for target in TARGETS:
        beta = (projected[target] / denominator).cpu()
        for m, role in enumerate(roles):
            table[f"beta_{target}_{role}"] = beta[:, m].numpy()
    if n_models == 2:
        table["nu_err"] = table["beta_error_base"] / table["beta_error_chat"]
        table["nu_rec"] = table["beta_reconstruction_base"] / table["beta_reconstruction_chat"]
    table["n_active"] = n_active.cpu().numpy().astype(int)
    return table


def scaling_flags(scaling_table, classes=None, nu_err_max: float = NU_ERR_MAX, nu_rec_max: float = NU_REC_MAX):
    """Add the paper's flags to a ``latent_scaling`` table (a copy is returned).

    ``complete_shrinkage``: ``nu_err >= nu_err_max`` (the base model's error still wants this
    direction, so the base decoder was shrunk away by the sparsity penalty); ``latent_decoupling``:
    ``nu_rec >= nu_rec_max`` (other latents rebuild the direction in the base model);
    ``chat_specific``: neither, and (when ``classes``, a Series of taxonomy classes, is given) chat-only.
    Latents that never fired have NaN ratios and are never chat-specific.
    """
    real("nu_err_max", nu_err_max, 0, low_open=True)
    real("nu_rec_max", nu_rec_max, 0, low_open=True)
    missing = {"nu_err", "nu_rec"} - set(getattr(scaling_table, "columns", ()))
    if missing:
        raise TypeError(f"scaling_table must be a latent_scaling table (with nu_err and nu_rec), got "
                        f"{type(scaling_table).__name__} lacking {sorted(missing)}")
    flagged = scaling_table.copy()
    flagged["complete_shrinkage"] = flagged["nu_err"] >= nu_err_max
    flagged["latent_decoupling"] = flagged["nu_rec"] >= nu_rec_max
    chat_specific = (flagged["nu_err"] < nu_err_max) & (flagged["nu_rec"] < nu_rec_max)
    if classes is not None:
        chat_specific &= classes.reindex(flagged.index) == "chat-only"
    flagged["chat_specific"] = chat_specific
    return flagged
