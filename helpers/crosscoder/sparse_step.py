"""A TopK / BatchTopK training step that touches only the active latents.

Of ``d_hidden`` latents only ``k`` per token are active, yet a dense step multiplies by the whole
dictionary five times (encoder forward, decoder forward, the decoder's two gradients, the encoder's
gradient). Here only the encoder forward stays dense (every pre-activation is needed to choose the active
ones, so it runs without a graph); everything else touches the active ``(token, latent)`` pairs alone:

- ``ActivePreactivations``: returns the chosen pre-activations; its backward builds the encoder's gradient
  from those entries only (a sparse ``[d_hidden, batch]`` by dense ``[batch, n_models * d_model]`` product),
  as EleutherAI's sparsify does for TopK SAEs;
- ``decode_active``: the reconstruction as an ``embedding_bag`` over the active latents' decoder rows,
  weighted by their activations, whose backward is likewise sparse.

``sparse_forward`` runs a whole step's forward for a crosscoder (selection, reconstruction, the sparsity
term and the aux-k loss of dead latents) and gives the same loss and gradients as the dense step up to
float rounding (``tests/test_sparse_step.py``: within 1e-4 relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import centred_energy


class ActivePreactivations(torch.autograd.Function):
    """``pre[rows, cols]`` of ``pre = x @ W + b``, given precomputed values; gradients only for those entries.

    Inputs: ``x [batch, n_in]``, ``weight [n_in, d_hidden]``, ``bias [d_hidden]``, ``rows``/``cols`` (long
    ``[n_active]``) and ``values`` ``[n_active]`` (the entries of the dense product, computed without a graph).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, rows, cols, values):  # noqa: D102 - see the class docstring
        ctx.save_for_backward(x, weight, rows, cols)
        ctx.d_hidden = bias.shape[0]
        return values.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight, rows, cols = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:  # dW[:, j] = sum over active (b, j) of grad_bj * x_b
            by_latent = torch.sparse_coo_tensor(torch.stack([cols, rows]), grad, (ctx.d_hidden, x.shape[0]),
                                                check_invariants=False)
            grad_weight = torch.sparse.mm(by_latent, x).T.to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = torch.zeros(ctx.d_hidden, dtype=grad.dtype, device=grad.device).index_add_(0, cols, grad)
        if ctx.needs_input_grad[0]:
            by_token = torch.sparse_coo_tensor(torch.stack([rows, cols]), grad, (x.shape[0], ctx.d_hidden),
                                               check_invariants=False)
            grad_x = torch.sparse.mm(by_token, weight.T.to(grad.dtype))
        return grad_x, grad_weight, grad_bias, None, None, None


def decode_active(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, decoder: torch.Tensor,
                  batch: int) -> torch.Tensor:
    """``sum over active (b, j) of values * decoder[j]`` per token: ``[batch, n_out]`` for a decoder
    ``[d_hidden, n_out]``; ``rows`` must be sorted (tokens without an active latent decode to zero)."""
    counts = torch.bincount(rows, minlength=batch)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, decoder, offsets, mode="sum", per_sample_weights=values.to(decoder.dtype))


def batch_top_k(scores: torch.Tensor, n_keep: int, per_row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n_keep`` largest entries of ``scores [batch, d_hidden]``: ``(rows, cols, values)``, sorted by row.

    Exact, and faster than one ``topk`` over the flattened batch: each row's ``per_row`` largest are the
    candidates, and the batch's ``n_keep`` largest among them are the answer whenever every row's smallest
    candidate is below the answer's smallest value (no row can hold more); otherwise the flat ``topk`` runs.
    """
    batch, d_hidden = scores.shape
    n_keep = min(n_keep, scores.numel())
    width = min(d_hidden, max(per_row, -(-n_keep // batch)))
    row_top = scores.topk(width, dim=-1, sorted=False)
    top = row_top.values.flatten().topk(n_keep, sorted=False)
    if width < d_hidden and not (row_top.values.min(-1).values < top.values.min()).all():
        flat = scores.flatten().topk(n_keep, sorted=False)
        rows, cols, values = flat.indices // d_hidden, flat.indices % d_hidden, flat.values
    else:
        rows, cols, values = top.indices // width, row_top.indices.flatten()[top.indices], top.values
    order = (rows * d_hidden + cols).argsort()
    return rows[order], cols[order], values[order]


def sparse_forward(crosscoder, x_norm: torch.Tensor, k: int | None, update_threshold: bool):
    """The forward of a training step for a ``topk`` / ``batchtopk`` crosscoder on working-space activations
    ``x_norm [batch, n_models, d_model]``, touching only active latents.

    Returns ``(latents [batch, d_hidden] detached, x_hat [batch, n_models, d_model], sparsity, aux_k, cols)``,
    ``x_hat``, ``sparsity`` and ``aux_k`` with their graphs (equal to the dense step's up to float rounding),
    ``cols`` the latent of every active entry (for L0 and the dead-latent counters).
    """
    cfg = crosscoder.cfg
    batch = x_norm.shape[0]
    x_flat = x_norm.to(crosscoder.W_enc.dtype).flatten(1)  # [batch, n_models * d_model]
    w_enc = crosscoder.W_enc.flatten(0, 1)  # [n_models * d_model, d_hidden]
    with torch.no_grad():
        acts = torch.addmm(crosscoder.b_enc, x_flat, w_enc).clamp_min_(0)  # post-ReLU, [batch, d_hidden]
        scores = acts * crosscoder.code_weights()
        rows, cols = crosscoder.active_indices(scores, k, update_threshold)
        keep = acts[rows, cols] > 0  # a zero activation decodes to nothing and has no gradient
        rows, cols = rows[keep], cols[keep]

    decoder = crosscoder.decoder_weight()
    decoder_flat = decoder.flatten(1)  # [d_hidden, n_models * d_model]
    values = torch.relu(ActivePreactivations.apply(x_flat, w_enc, crosscoder.b_enc, rows, cols, acts[rows, cols]))
    x_hat = (decode_active(rows, cols, values, decoder_flat, batch).view_as(x_norm) + crosscoder.b_dec)
    penalty = crosscoder.code_weights()
    if crosscoder._penalised:
        penalty = penalty * crosscoder.penalty_scales
    sparsity = (values.float() * penalty.float()[cols]).sum() / batch

    aux = torch.zeros((), device=x_norm.device)
    dead = crosscoder.dead_mask()
    n_dead = int(dead.sum())
    if n_dead:
        with torch.no_grad():
            k_aux = min(cfg.aux_k or cfg.d_model // 2, n_dead)
            aux_scores = torch.where(dead[None, :], scores, torch.full_like(scores, -1.0))
            aux_chosen = torch.zeros_like(acts, dtype=torch.bool).scatter_(-1, aux_scores.topk(k_aux, -1).indices, True)
            aux_rows, aux_cols = (aux_chosen & (acts > 0)).nonzero(as_tuple=True)
        aux_values = torch.relu(ActivePreactivations.apply(x_flat, w_enc, crosscoder.b_enc, aux_rows, aux_cols,
                                                           acts[aux_rows, aux_cols]))
        aux_recon = decode_active(aux_rows, aux_cols, aux_values, decoder_flat, batch).view_as(x_norm).float()
        target = (x_norm.to(x_hat.dtype) - x_hat).detach().float()  # -(x_hat - x): what is left to explain
        denominator = centred_energy(target).clamp_min(1e-8)
        aux = (aux_recon - target).pow(2).sum(dim=(-2, -1)).mean() / denominator

    latents = torch.zeros_like(acts)
    latents[rows, cols] = values.detach().to(latents.dtype)
    return latents, x_hat, sparsity, aux, cols


def dense_aux_k_loss(crosscoder, acts: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The dense step's auxiliary loss: each token's top ``aux_k`` dead latents reconstruct the residual error.

    ``acts`` ``[batch, d_hidden]`` post-ReLU, ``residual`` ``[batch, n_models, d_model]`` = x_hat - x (detached).
    Returns the squared error normalised by the residual's variance, so that its scale does not depend on how good
    the main reconstruction already is (``sparse_forward`` computes the same on the active entries only).
    """
    dead = crosscoder.dead_mask()
    n_dead = int(dead.sum())
    if n_dead == 0:
        return torch.zeros((), device=acts.device)
    cfg = crosscoder.cfg
    k_aux = min(cfg.aux_k or cfg.d_model // 2, n_dead)
    scores = torch.where(dead[None, :], acts * crosscoder.code_weights(), torch.full_like(acts, -1.0))
    top = scores.topk(k_aux, dim=-1)
    aux_latents = torch.zeros_like(acts).scatter(-1, top.indices, acts.gather(-1, top.indices))
    aux_recon = torch.einsum("bh,hnd->bnd", aux_latents, crosscoder.decoder_weight()).float()
    target = -residual
    return (aux_recon - target).pow(2).sum(dim=(-2, -1)).mean() / centred_energy(target).clamp_min(1e-8)
