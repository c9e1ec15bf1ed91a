"""CrossCoder against an independent implementation of the replication's formulas."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig


def reference_forward(W_enc, W_dec, b_enc, b_dec, x, l1_coeff):
    """The replication's formulas, written directly (no shared code with helpers)."""
    pre = torch.zeros(x.shape[0], W_enc.shape[-1])
    for m in range(x.shape[1]):
        pre = pre + x[:, m, :] @ W_enc[m]
    f = torch.relu(pre + b_enc)
    x_hat = torch.stack([f @ W_dec[:, m, :] + b_dec[m] for m in range(x.shape[1])], dim=1)
    diff = (x_hat - x) ** 2
    recon = diff.sum(dim=(1, 2)).mean()
    dec_norm_total = sum(W_dec[:, m, :].norm(dim=-1) for m in range(x.shape[1]))
    l1 = (f * dec_norm_total[None, :]).sum(-1).mean()
    total_var = ((x - x.mean(0, keepdim=True)) ** 2).sum(dim=(1, 2))
    ev = (1 - diff.sum(dim=(1, 2)) / total_var).mean()
    ev_a = (1 - diff[:, 0].sum(-1) / ((x[:, 0] - x[:, 0].mean(0)) ** 2).sum(-1)).mean()
    l0 = (f > 0).float().sum(-1).mean()
    return f, x_hat, recon, l1, recon + l1_coeff * l1, ev, ev_a, l0


def test_init_matches_replication(small_cfg):
    crosscoder = CrossCoder(small_cfg)
    norms = crosscoder.W_dec.norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, small_cfg.dec_init_norm), atol=1e-6)
    assert torch.equal(crosscoder.W_enc, crosscoder.W_dec.permute(1, 2, 0))
    assert torch.count_nonzero(crosscoder.b_enc) == 0 and torch.count_nonzero(crosscoder.b_dec) == 0
    assert torch.equal(CrossCoder(small_cfg).W_dec, crosscoder.W_dec), "same seed, same weights"
    other = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48, seed=4))
    assert not torch.equal(other.W_dec, crosscoder.W_dec)


@pytest.mark.parametrize("n_models", [1, 2, 3])
def test_encode_decode_losses_match_reference(n_models):
    torch.manual_seed(0)
    cfg = CrossCoderConfig(d_model=12, d_hidden=40, n_models=n_models)
    crosscoder = CrossCoder(cfg)
    with torch.no_grad():
        crosscoder.b_enc.normal_(0, 0.05)
        crosscoder.b_dec.normal_(0, 0.1)
        crosscoder.W_enc.normal_(0, 0.3)
    x = torch.randn(50, n_models, 12)
    f, x_hat, recon, l1, total, ev, ev_a, l0 = reference_forward(
        crosscoder.W_enc.detach(), crosscoder.W_dec.detach(), crosscoder.b_enc.detach(),
        crosscoder.b_dec.detach(), x, l1_coeff=2.0,
    )
    assert torch.allclose(crosscoder.encode(x, normalized=True), f, atol=1e-5)
    assert torch.allclose(crosscoder.decode(f, normalized=True), x_hat, atol=1e-5)
    out = crosscoder.losses(x, normalized=True, l1_coeff=2.0)
    assert torch.allclose(out.reconstruction, recon, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.sparsity, l1, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.total, total, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.explained_variance, ev, atol=1e-5)
    assert torch.allclose(out.explained_variance_per_model[0], ev_a, atol=1e-5)
    assert torch.allclose(out.l0, l0)
    assert out.aux_k == 0


def test_raw_activations_are_normalised_by_the_crosscoder(trained_like, activations):
    x_norm = (activations - trained_like.activation_mean) * trained_like.scale_factors[:, None]
    assert torch.allclose(trained_like.encode(activations), trained_like.encode(x_norm, normalized=True))
    recon_raw = trained_like(activations)
    recon_norm = trained_like(x_norm, normalized=True)
    assert torch.allclose(trained_like.normalize(recon_raw), recon_norm, atol=1e-5)


def test_fold_scaling_reconstructs_raw_activations_identically(trained_like, activations):
    before = trained_like(activations).detach()
    losses_before = trained_like.losses(activations)
    norms_before = trained_like.decoder_norms().detach()
    trained_like.fold_scaling()
    assert trained_like.is_folded
    assert torch.allclose(trained_like(activations), before, atol=1e-5)
    assert torch.allclose(trained_like.losses(activations).reconstruction, losses_before.reconstruction, rtol=1e-5)
    assert torch.allclose(trained_like.decoder_norms(), norms_before, atol=1e-6)
    with pytest.raises(RuntimeError, match="already"):
        trained_like.fold_scaling()


def test_topk_keeps_k_per_token(activations):
    crosscoder = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48, activation="topk", k=5))
    latents = crosscoder.encode(activations)
    assert torch.all((latents > 0).sum(-1) <= 5)
    assert (latents > 0).sum(-1).float().mean() > 4  # nearly all tokens have 5 positive pre-activations


def test_batchtopk_selects_k_times_batch_on_decoder_scaled_acts_and_learns_threshold(activations):
    crosscoder = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48, activation="batchtopk", k=3))
    with torch.no_grad():
        crosscoder.W_dec[:10] *= 5  # make decoder norms matter for the selection
    crosscoder.train()
    out = crosscoder.losses(activations)
    acts = torch.relu(crosscoder.pre_activations(activations)).detach()
    scores = acts * crosscoder.decoder_norms().sum(-1).detach()
    top = scores.flatten().topk(3 * activations.shape[0]).indices
    expected = torch.zeros_like(scores).flatten()
    expected[top] = acts.flatten()[top]
    assert torch.allclose(out.latents, expected.view_as(acts))
    assert crosscoder.threshold > 0
    assert torch.isclose(crosscoder.threshold, scores.flatten()[top].min())
    crosscoder.eval()
    inference = crosscoder.encode(activations)
    assert torch.equal(inference > 0, scores > crosscoder.threshold)


def test_aux_k_loss_trains_dead_latents(activations):
    """The aux-k loss enters the total and moves the encoder of dead latents only when they are dead."""
    cfg = CrossCoderConfig(d_model=16, d_hidden=48, activation="topk", k=2, aux_k=8, dead_after_tokens=10)

    def dead_grad(mark_dead: bool) -> tuple[torch.Tensor, torch.Tensor]:
        crosscoder = CrossCoder(cfg).train()
        latents = crosscoder.encode(activations)
        never_selected = (latents == 0).all(0)
        if mark_dead:
            crosscoder.tokens_since_fired[never_selected] = 100
        out = crosscoder.losses(activations)
        out.total.backward()
        return crosscoder.W_enc.grad[:, :, never_selected].abs().sum(), out.aux_k

    grad_alive, aux_alive = dead_grad(False)
    grad_dead, aux_dead = dead_grad(True)
    assert aux_alive == 0 and grad_alive == 0
    assert aux_dead > 0 and grad_dead > 0


def test_dead_counters_update_in_training(activations):
    crosscoder = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48)).train()
    with torch.no_grad():
        crosscoder.b_enc[:5] = -1e3
    crosscoder.losses(activations)
    assert torch.all(crosscoder.tokens_since_fired[:5] == activations.shape[0])
    crosscoder.eval()
    crosscoder.losses(activations)
    assert torch.all(crosscoder.tokens_since_fired[:5] == activations.shape[0])


@pytest.mark.parametrize(
    "bad",
    [torch.randn(4, 16), torch.randn(4, 3, 16), torch.randn(4, 2, 15), torch.ones(4, 2, 16, dtype=torch.long)],
)
def test_bad_activations_raise_with_expected_shape(small_cfg, bad):
    with pytest.raises(ValueError, match=r"\[batch, 2, 16\]|floating-point"):
        CrossCoder(small_cfg).encode(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_models": 0}, "n_models"),
        ({"activation": "gelu"}, "activation"),
        ({"activation": "topk"}, "k"),
        ({"activation": "batchtopk", "k": 1000}, "k"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossCoderConfig(d_model=16, d_hidden=48, **kwargs)


def test_bad_scale_factors_raise(small_cfg):
    with pytest.raises(ValueError, match="scale_factors"):
        CrossCoder(small_cfg).set_normalization([1.0, 0.0])
