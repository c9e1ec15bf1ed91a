"""The dense relu training step with fewer passes over ``[batch, d_hidden]``.

Written plainly (the replication's way), the relu step's encoder side makes about ten passes over the latents
besides its matrix products: the bias add, the relu, the penalty's mat-vec, L0's ``sign`` and sum, the
dead-latent ``amax``; and in the backward the penalty's broadcast gradient, its sum with the decoder's, the
relu's mask and the penalty weights' mat-vec. ``relu_encode`` makes six:

- forward: the bias rides in the encoder's ``addmm``; the relu runs in place on its output; one column sum
  gives the penalty ``sum_b sum_j f_bj w_j / batch = (sum_b f_b) . w / batch``, the penalty weights' gradient
  and which latents fired (``f >= 0``, so a column fired iff its sum is positive); one ``sign`` and sum give L0;
- backward: the decoder's gradient plus the penalty's (``w`` scaled by the incoming gradient, broadcast over the
  batch) in one add, then the relu's mask in one ``threshold_backward``.

Same losses and gradients as the plain formulation up to float rounding (``tests/test_relu_step.py``).
"""

from __future__ import annotations

import torch


class ReluWithPenalty(torch.autograd.Function):
    """``(latents, penalty, l0, fired)`` of encoder pre-activations ``pre [batch, d_hidden]`` (overwritten in place
    by the relu) and penalty weights ``weights [d_hidden]``: ``latents = relu(pre)``, ``penalty`` the mean over
    the batch of ``latents @ weights`` (float32), ``l0`` the mean number of active latents per row and ``fired``
    ``[d_hidden]`` bool (the last two without gradient)."""

    @staticmethod
    def forward(ctx, pre, weights):  # noqa: D102 - see the class docstring
        latents = pre.clamp_min_(0)
        ctx.mark_dirty(pre)
        column_sums = latents.sum(0, dtype=torch.float32)  # [d_hidden]
        batch = latents.shape[0]
        penalty = column_sums @ weights.float() / batch
        l0 = latents.sign().sum() / batch  # latents >= 0: sign is 1 where active (the fastest count on CPU)
        fired = column_sums > 0
        ctx.save_for_backward(latents, weights, column_sums)
        ctx.mark_non_differentiable(l0, fired)
        return latents, penalty, l0, fired

    @staticmethod
    def backward(ctx, grad_latents, grad_penalty, _grad_l0, _grad_fired):  # noqa: D102
        latents, weights, column_sums = ctx.saved_tensors
        batch = latents.shape[0]
        scale = grad_penalty.float() / batch
        grad_weights = (column_sums * scale).to(weights.dtype) if ctx.needs_input_grad[1] else None
        penalty_grad = (weights.float() * scale).to(latents.dtype)  # [d_hidden], the same for every row
        grad = penalty_grad.expand_as(latents) if grad_latents is None else grad_latents + penalty_grad
        grad_pre = torch.ops.aten.threshold_backward(grad, latents, 0)
        return grad_pre, grad_weights


def relu_encode(x_norm: torch.Tensor, encoder: torch.Tensor, bias: torch.Tensor,
                weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A relu crosscoder's encoder side of a training step: working-space ``x_norm [batch, n_models, d_model]``,
    ``encoder [n_models, d_model, d_hidden]``, ``bias [d_hidden]``, penalty ``weights [d_hidden]`` ->
    ``(latents [batch, d_hidden], penalty, l0, fired [d_hidden])`` (see ``ReluWithPenalty``)."""
    x_flat = x_norm.to(encoder.dtype).flatten(1)
    return ReluWithPenalty.apply(torch.addmm(bias, x_flat, encoder.flatten(0, 1)), weights)
