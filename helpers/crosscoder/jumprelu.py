"""JumpReLU crosscoders: per-latent thresholds learned through a straight-through estimator, with Anthropic's
tanh sparsity penalty and pre-activation loss.

The activation is ``f = h * 1[h > theta]`` of the encoder pre-activation ``h`` with a positive threshold ``theta =
exp(log_threshold)`` per latent (Rajamanoharan et al. 2024, "Jumping Ahead", arXiv 2407.14435; Gemma Scope's
activation). Its step has no useful derivative in ``theta``, so the backward uses the paper's pseudo-derivative
``d f / d theta = -(theta / eps) * K((h - theta) / eps)`` with the rectangle kernel ``K(u) = 1[-1/2 < u < 1/2]`` of
bandwidth ``eps``, and the ordinary ``1[h > theta]`` for ``h``; this is SAELens' ``JumpReLU`` autograd function
(``sae_lens/saes/jumprelu_sae.py``), and the chain rule through ``exp`` gives ``log_threshold`` its gradient.

The losses are those of Anthropic's January 2025 circuits update ("Dictionary learning optimization techniques"),
as SAELens' ``tanh`` sparsity mode and the crosscoding library (``tanh_sparsity_loss``, ``pre_act_loss``) write them,
with ``w_j`` the latent's decoder-norm weight (for a crosscoder: the sum over models of its decoder norms):

- sparsity: ``mean_b sum_j tanh(c * f_bj * w_j)``, an L0-like penalty that saturates for large activations;
- pre-activation loss: ``mean_b sum_j relu(theta_j - h_bj) * w_j``, which pushes latents that never fire back
  towards their threshold (Anthropic apply it to every latent, as here; SAELens to the dead ones only).

The total is ``reconstruction + lambda_s * sparsity + lambda_p * pre_act`` (``l1_coeff`` is ``lambda_s``;
``CrossCoderConfig.pre_act_coeff`` is ``lambda_p``, 3e-6 in the update).
"""

from __future__ import annotations

import torch


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """``pre * 1[pre > threshold]`` of ``pre [batch, d_hidden]`` and ``threshold [d_hidden]``; the backward gives
    ``pre`` the gradient through ``1[pre > threshold]`` and ``threshold`` the rectangle-kernel pseudo-derivative of
    bandwidth ``bandwidth`` (see the module docstring)."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):  # noqa: D102 - see the class docstring
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        pre, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        grad_pre = grad_output * (pre > threshold)
        grad_threshold = (-(threshold / bandwidth) * _rectangle((pre - threshold) / bandwidth) * grad_output).sum(0)
        return grad_pre, grad_threshold, None


def jump_relu(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """JumpReLU of pre-activations ``pre [batch, d_hidden]`` with thresholds ``threshold [d_hidden]`` (> 0) and the
    straight-through estimator's ``bandwidth`` (> 0) -> latents ``[batch, d_hidden]``."""
    if pre.ndim != 2 or threshold.shape != pre.shape[-1:]:
        raise ValueError(f"jump_relu needs pre [batch, d_hidden] and threshold [d_hidden], got {list(pre.shape)} and "
                         f"{list(threshold.shape)}")
    if not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    return JumpReLU.apply(pre, threshold.to(pre.dtype), float(bandwidth))


def jumprelu_penalties(latents: torch.Tensor, pre: torch.Tensor, threshold: torch.Tensor, weights: torch.Tensor,
                       tanh_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anthropic's ``(sparsity, pre_act)`` of latents and pre-activations ``[batch, d_hidden]``, thresholds and
    decoder-norm weights ``[d_hidden]``: ``mean_b sum_j tanh(tanh_scale * f_bj * w_j)`` and ``mean_b sum_j
    relu(theta_j - h_bj) * w_j``, both float32 scalars."""
    if latents.ndim != 2 or pre.shape != latents.shape or threshold.shape != latents.shape[-1:] \
            or weights.shape != latents.shape[-1:]:
        raise ValueError(f"jumprelu_penalties needs latents and pre [batch, d_hidden], threshold and weights "
                         f"[d_hidden]; got {list(latents.shape)}, {list(pre.shape)}, {list(threshold.shape)}, "
                         f"{list(weights.shape)}")
    if not (isinstance(tanh_scale, (int, float)) and tanh_scale > 0):
        raise ValueError(f"tanh_scale must be a positive number, got {tanh_scale!r}")
    weights = weights.float()
    sparsity = torch.tanh(tanh_scale * latents.float() * weights).sum(-1).mean()
    pre_act = (torch.relu(threshold.float() - pre.float()) * weights).sum(-1).mean()
    return sparsity, pre_act
