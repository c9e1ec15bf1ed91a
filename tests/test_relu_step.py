"""The relu step (``helpers.crosscoder.relu_step``) against the plain formulation written out here: same losses,
metrics and gradients for every parameter, for the plain, penalised and designated-latent crosscoders."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.crosscoder.relu_step import relu_step


def plain_losses(crosscoder: CrossCoder, x: torch.Tensor, l1_coeff: float):
    """The replication's relu step: einsum encode, bias add, relu, decode, squared error + decoder-norm-weighted L1."""
    x_norm = crosscoder.normalize(x)
    pre = torch.einsum("bnd,ndh->bh", x_norm, crosscoder.W_enc) + crosscoder.b_enc
    acts = torch.relu(pre)
    x_hat = torch.einsum("bh,hnd->bnd", acts, crosscoder.decoder_weight()) + crosscoder.b_dec
    weights = crosscoder.code_weights()
    if crosscoder._penalised:
        weights = weights * crosscoder.penalty_scales
    reconstruction = (x_hat - x_norm).pow(2).sum((-2, -1)).mean()
    sparsity = (acts * weights[None]).sum(-1).mean()
    return reconstruction + l1_coeff * sparsity, sparsity, (acts > 0).float().sum(-1).mean(), (acts > 0).any(0)


CONFIGS = {
    "plain": dict(),
    "designated shared latents": dict(shared_latents=16, shared_sparsity_scale=0.2),
    "dedicated latents": dict(exclusive_latents=[8, 8]),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_relu_step_equals_the_plain_formulation(name):
    torch.manual_seed(0)
    cfg = CrossCoderConfig(d_model=16, d_hidden=96, **CONFIGS[name])
    x = torch.randn(64, 2, 16) * 3
    ours, reference = CrossCoder(cfg).train(), CrossCoder(cfg).train()
    with torch.no_grad():
        ours.b_enc.normal_(0, 0.5)  # some latents off, some on
    reference.load_state_dict(ours.state_dict())
    got = ours.losses(x, l1_coeff=0.7)
    total, sparsity, l0, fired = plain_losses(reference, x, 0.7)
    assert torch.allclose(got.total, total, rtol=1e-5)
    assert torch.allclose(got.sparsity, sparsity, rtol=1e-5)
    assert got.l0 == l0 and 0 < l0 < cfg.d_hidden
    got.total.backward()
    total.backward()
    for (param_name, param), other in zip(ours.named_parameters(), reference.parameters()):
        assert param.grad is not None, param_name
        assert torch.allclose(param.grad, other.grad, rtol=1e-4, atol=1e-6), param_name
    assert torch.equal(ours.tokens_since_fired == 0, fired), "the dead-latent counters saw the same firing latents"


def test_relu_step_outputs_against_the_formulas():
    torch.manual_seed(1)
    x, encoder, decoder = torch.randn(32, 2, 8), torch.randn(2, 8, 40), torch.randn(40, 2, 8)
    encoder_bias, decoder_bias, weights = torch.randn(40), torch.randn(2, 8), torch.rand(40)
    latents, x_hat, penalty, l0, fired = relu_step(x, encoder, encoder_bias, decoder, decoder_bias, weights)
    expected = torch.relu(torch.einsum("bnd,ndh->bh", x, encoder) + encoder_bias)
    assert torch.allclose(latents, expected, atol=1e-5) and not latents.requires_grad
    assert torch.allclose(x_hat, torch.einsum("bh,hnd->bnd", expected, decoder) + decoder_bias, atol=1e-4)
    assert torch.allclose(penalty, (expected @ weights).mean(), rtol=1e-5)
    assert l0 == (expected > 0).sum() / 32 and torch.equal(fired, (expected > 0).any(0))


@pytest.mark.parametrize("name, index, shape", [("x_norm", 0, (32, 3, 8)), ("encoder_bias", 2, (41,)),
                                                ("decoder", 3, (40, 8, 2)), ("decoder_bias", 4, (8,)),
                                                ("weights", 5, (40, 1))])
def test_relu_step_refuses_mismatched_shapes(name, index, shape):
    args = [torch.randn(32, 2, 8), torch.randn(2, 8, 40), torch.randn(40), torch.randn(40, 2, 8), torch.randn(2, 8),
            torch.rand(40)]
    args[index] = torch.randn(*shape)
    with pytest.raises(ValueError, match=name):
        relu_step(*args)
