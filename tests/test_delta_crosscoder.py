"""The delta-crosscoder's loss (``CrossCoderConfig.delta_coeff``) against the formula written out here, on the dense
BatchTopK step, the sparse one and the relu step, and its bad input."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig


@pytest.mark.parametrize("activation, k, sparse",
                         [("batchtopk", 6, True), ("batchtopk", 6, False), ("relu", None, None)])
def test_delta_loss_and_gradients_equal_the_written_out_loss(activation, k, sparse):
    torch.manual_seed(0)
    cfg = CrossCoderConfig(d_model=8, d_hidden=48, activation=activation, k=k, delta_coeff=0.7)
    with_delta, without = CrossCoder(cfg).train(), CrossCoder(CrossCoderConfig(**{**cfg.__dict__, "delta_coeff": 0.0}))
    without.train().load_state_dict(with_delta.state_dict())
    x = torch.randn(32, 2, 8) * 2
    got = with_delta.losses(x, l1_coeff=0.1, sparse=sparse)
    plain = without.losses(x, l1_coeff=0.1, sparse=sparse)
    x_norm = without.normalize(x)
    pre = torch.einsum("bnd,ndh->bh", x_norm, without.W_enc) + without.b_enc
    latents = torch.relu(pre) * (plain.latents > 0)  # the step's selection, with the encoder's graph
    x_hat = torch.einsum("bh,hnd->bnd", latents, without.W_dec) + without.b_dec
    delta = ((x_norm[:, 1] - x_norm[:, 0]) - (x_hat[:, 1] - x_hat[:, 0])).pow(2).sum(-1).mean()
    assert torch.allclose(got.delta, delta, rtol=1e-4) and torch.allclose(plain.delta, delta, rtol=1e-4)
    assert torch.allclose(got.total, plain.total + 0.7 * delta, rtol=1e-4)
    (plain.total + 0.7 * delta).backward()
    got.total.backward()
    for (name, param), other in zip(with_delta.named_parameters(), without.parameters()):
        assert torch.allclose(param.grad, other.grad, rtol=1e-3, atol=1e-5), name
    assert with_delta.cfg.variant == "delta" and without.cfg.variant == "standard"


def test_delta_coeff_refuses_bad_values():
    with pytest.raises(ValueError, match="delta_coeff"):
        CrossCoderConfig(d_model=8, d_hidden=16, delta_coeff=-0.1)
    with pytest.raises(ValueError, match="delta_coeff"):
        CrossCoderConfig(d_model=8, d_hidden=16, delta_coeff=float("nan"))
    with pytest.raises(ValueError, match="two models"):
        CrossCoderConfig(d_model=8, d_hidden=16, n_models=3, delta_coeff=1.0)
