"""JumpReLU crosscoders (``helpers.crosscoder.jumprelu``) against the formulas written out here: the activation, its
straight-through gradients (SAELens' ``JumpReLU``), Anthropic's tanh sparsity and pre-activation losses, the whole
loss of ``CrossCoder.losses``, saving and folding, and bad input."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.checkpoints import load, save
from helpers.crosscoder.jumprelu import jump_relu, jumprelu_penalties
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig


def test_jump_relu_forward_and_straight_through_gradients():
    torch.manual_seed(0)
    pre = (torch.randn(50, 6) * 2).requires_grad_()
    log_threshold = torch.randn(6).mul(0.3).requires_grad_()
    upstream = torch.randn(50, 6)
    bandwidth = 0.8
    out = jump_relu(pre, log_threshold.exp(), bandwidth)
    (out * upstream).sum().backward()
    theta = log_threshold.detach().exp()
    expected_grad_log = torch.zeros(6)
    for j in range(6):  # per latent: d/d theta_j = sum_b g_bj * (-(theta_j / eps)) * 1[|h_bj - theta_j| < eps/2]
        near = (pre.detach()[:, j] - theta[j]).abs() < bandwidth / 2
        expected_grad_log[j] = (upstream[near, j] * -(theta[j] / bandwidth)).sum() * theta[j]  # chain rule through exp
    active = pre.detach() > theta
    assert torch.equal(out.detach(), torch.where(active, pre.detach(), torch.zeros(())))
    assert torch.allclose(pre.grad, upstream * active)
    assert torch.allclose(log_threshold.grad, expected_grad_log, rtol=1e-5, atol=1e-6)
    assert (log_threshold.grad != 0).any()


def test_jumprelu_penalties_against_the_update_formulas():
    torch.manual_seed(1)
    pre, theta, weights = torch.randn(20, 7), torch.rand(7) * 0.5 + 0.1, torch.rand(7) + 0.5
    latents = pre * (pre > theta)
    sparsity, pre_act = jumprelu_penalties(latents, pre, theta, weights, tanh_scale=4.0)
    expected_sparsity = sum(torch.tanh(4.0 * latents[b, j] * weights[j]) for b in range(20) for j in range(7)) / 20
    expected_pre_act = sum(max(theta[j] - pre[b, j], 0.0) * weights[j] for b in range(20) for j in range(7)) / 20
    assert torch.allclose(sparsity, expected_sparsity, rtol=1e-5)
    assert torch.allclose(pre_act, torch.as_tensor(expected_pre_act), rtol=1e-5)


def test_jumprelu_crosscoder_loss_and_gradients_equal_the_written_out_loss():
    torch.manual_seed(2)
    cfg = CrossCoderConfig(d_model=8, d_hidden=32, activation="jumprelu", jumprelu_init_threshold=0.3,
                           jumprelu_bandwidth=1.0, pre_act_coeff=0.01)
    ours = CrossCoder(cfg).train()
    reference = CrossCoder(cfg).train()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(64, 2, 8) * 2
    got = ours.losses(x, l1_coeff=0.3)

    x_norm = reference.normalize(x)
    pre = torch.einsum("bnd,ndh->bh", x_norm, reference.W_enc) + reference.b_enc
    theta = reference.log_threshold.exp()
    latents = jump_relu(pre, theta, 1.0)
    x_hat = torch.einsum("bh,hnd->bnd", latents, reference.W_dec) + reference.b_dec
    weights = reference.W_dec.norm(dim=-1).sum(-1)  # Anthropic's crosscoder weighting: summed decoder norms
    reconstruction = (x_hat - x_norm).pow(2).sum((-2, -1)).mean()
    sparsity = torch.tanh(4.0 * latents * weights).sum(-1).mean()
    pre_act = (torch.relu(theta - pre) * weights).sum(-1).mean()
    total = reconstruction + 0.3 * sparsity + 0.01 * pre_act
    assert torch.allclose(got.total, total, rtol=1e-5) and torch.allclose(got.aux_k, pre_act, rtol=1e-5)
    assert got.l0 == (latents > 0).sum(-1).float().mean() and 0 < got.l0 < 32
    got.total.backward()
    total.backward()
    for (name, param), other in zip(ours.named_parameters(), reference.parameters()):
        assert torch.allclose(param.grad, other.grad, rtol=1e-4, atol=1e-6), name
    assert ours.log_threshold.grad.abs().sum() > 0


def test_jumprelu_encode_survives_saving_and_folding(tmp_path):
    torch.manual_seed(3)
    crosscoder = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=32, activation="jumprelu",
                                             jumprelu_init_threshold=0.4)).eval()
    crosscoder.set_normalization(torch.tensor([0.5, 2.0]), torch.randn(2, 8))
    with torch.no_grad():
        crosscoder.log_threshold.add_(torch.randn(32) * 0.3)
    x = torch.randn(40, 2, 8) * 3
    latents = crosscoder.encode(x)
    assert 0 < (latents > 0).float().mean() < 1
    save(crosscoder, tmp_path / "jr")
    loaded = load(tmp_path / "jr")
    assert loaded.cfg.activation == "jumprelu"
    assert torch.equal(loaded.log_threshold, crosscoder.log_threshold)
    assert torch.allclose(loaded.encode(x), latents)
    loaded.fold_scaling()
    assert torch.allclose(loaded.encode(x), latents, atol=1e-5)
    assert torch.allclose(loaded(x), crosscoder(x), atol=1e-4)


@pytest.mark.parametrize("field, value, message", [
    ("jumprelu_bandwidth", 0.0, "jumprelu_bandwidth"), ("jumprelu_init_threshold", float("nan"), "jumprelu_init"),
    ("tanh_scale", -1.0, "tanh_scale"), ("pre_act_coeff", -1e-6, "pre_act_coeff"), ("k", 8, "takes no k"),
])
def test_jumprelu_config_refuses_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        CrossCoderConfig(d_model=8, d_hidden=32, activation="jumprelu", **{field: value})


def test_jump_relu_refuses_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        jump_relu(torch.randn(4, 6), torch.rand(5), 1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        jump_relu(torch.randn(4, 6), torch.rand(6), 0.0)
    with pytest.raises(ValueError, match="weights"):
        jumprelu_penalties(torch.rand(4, 6), torch.rand(4, 6), torch.rand(6), torch.rand(5), 4.0)
    with pytest.raises(ValueError, match="tanh_scale"):
        jumprelu_penalties(torch.rand(4, 6), torch.rand(4, 6), torch.rand(6), torch.rand(6), float("nan"))
