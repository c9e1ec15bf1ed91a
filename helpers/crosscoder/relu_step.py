"""The dense relu training step with fewer passes over ``[batch, d_hidden]``.

Written plainly (the replication's way), the relu step makes about ten passes over the latents besides its
matrix products: the bias add, the relu, the penalty's mat-vec, L0's ``sign`` and sum, the dead-latent ``amax``;
and in the backward the penalty's broadcast gradient, its sum with the decoder's, the relu's mask and the
penalty weights' mat-vec. ``relu_step`` makes five:

- the encoder's bias rides in its ``addmm``, and the relu runs in place on that output;
- the penalty rides in the decoder's matrix product as one more output column: the decoder
  ``[d_hidden, n_models * d_model]`` gets the penalty weights ``w [d_hidden]`` as its last column, so the product
  gives every row's reconstruction and its ``latents . w`` at once. Its backward then hands the latents the
  decoder's gradient *plus* the penalty's (``w`` times the last column's gradient) from the same matrix product,
  and the weights' gradient (``latents^T`` times that column) from the decoder weights' product: no pass of its own;
- one ``sign`` and column sum give L0 and which latents fired;
- the backward's own passes are the relu's mask (``threshold_backward``, in place on the decoder product's
  gradient) and the encoder bias's column sum.

Same losses and gradients as the plain formulation up to float rounding (``tests/test_relu_step.py``).
"""

from __future__ import annotations

import torch


class _ReluInPlace(torch.autograd.Function):
    """``relu`` of ``pre [batch, d_hidden]`` in place, whose backward masks the incoming gradient in place too (when
    it is a contiguous tensor of its own, as the decoder product's fresh output is), sparing the ``[batch, d_hidden]``
    allocation that ``threshold_backward`` makes otherwise. Only for an output that no hook can see: ``relu_step``
    hands out its latents detached."""

    @staticmethod
    def forward(ctx, pre):  # noqa: D102 - see the class docstring
        latents = pre.clamp_min_(0)
        ctx.mark_dirty(pre)
        ctx.save_for_backward(latents)
        return latents

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (latents,) = ctx.saved_tensors
        if grad.is_contiguous() and grad.shape == latents.shape and not grad._is_view():
            return torch.ops.aten.threshold_backward.grad_input(grad, latents, 0, grad_input=grad)
        return torch.ops.aten.threshold_backward(grad, latents, 0)


def relu_step(x_norm: torch.Tensor, encoder: torch.Tensor, encoder_bias: torch.Tensor, decoder: torch.Tensor,
              decoder_bias: torch.Tensor, weights: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A relu crosscoder's training forward in the working space.

    ``x_norm [batch, n_models, d_model]``, ``encoder [n_models, d_model, d_hidden]``, ``encoder_bias [d_hidden]``,
    ``decoder [d_hidden, n_models, d_model]``, ``decoder_bias [n_models, d_model]``, penalty ``weights
    [d_hidden]`` -> ``(latents [batch, d_hidden], x_hat [batch, n_models, d_model], penalty, l0, fired
    [d_hidden] bool)``: ``latents = relu(x W_enc + b_enc)``, ``x_hat = latents W_dec + b_dec``, ``penalty`` the
    batch mean of ``latents . weights`` (float32), ``l0`` the mean number of active latents per row and
    ``fired`` the latents active in any row. The latents, ``l0`` and ``fired`` come without gradient (the
    gradient reaches the encoder through the reconstruction and the penalty).
    """
    n_models, d_model, d_hidden = encoder.shape
    expected = {"x_norm": (x_norm, (x_norm.shape[0], n_models, d_model)),
                "encoder_bias": (encoder_bias, (d_hidden,)), "decoder": (decoder, (d_hidden, n_models, d_model)),
                "decoder_bias": (decoder_bias, (n_models, d_model)), "weights": (weights, (d_hidden,))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} for an encoder of shape {list(encoder.shape)}, "
                             f"got {list(tensor.shape)}")
    batch = x_norm.shape[0]
    x_flat = x_norm.to(encoder.dtype).flatten(1)
    latents = _ReluInPlace.apply(torch.addmm(encoder_bias, x_flat, encoder.flatten(0, 1)))
    extended = torch.cat([decoder.flatten(1), weights.to(decoder.dtype)[:, None]], dim=1)
    extended_bias = torch.cat([decoder_bias.flatten(), decoder_bias.new_zeros(1)])
    out = torch.addmm(extended_bias, latents.to(decoder.dtype), extended)  # [batch, n_models * d_model + 1]
    x_hat = out[:, :-1].view(batch, n_models, d_model)
    penalty = out[:, -1].float().mean()
    with torch.no_grad():
        active_per_latent = latents.sign().sum(0)  # [d_hidden]; latents >= 0, and sign is CPU's fastest count
        l0 = active_per_latent.sum() / batch
        fired = active_per_latent > 0
    return latents.detach(), x_hat, penalty, l0, fired
