"""Designated shared latents (tied decoders) and dedicated latents (exclusive decoders): the constraints
hold by construction through training steps, save / load and folding, with every sparsity type."""

from __future__ import annotations

import pytest
import torch

from helpers.analysis.norms import latent_table, relative_norms
from helpers.crosscoder.checkpoints import load, save
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

from .fakes import SyntheticSource

SPARSITY = [("relu", None), ("topk", 4), ("batchtopk", 4)]


def variant(activation: str, k: int | None, **kwargs) -> CrossCoder:
    cfg = CrossCoderConfig(d_model=8, d_hidden=32, activation=activation, k=k, seed=2, shared_latents=4,
                           shared_sparsity_scale=0.2, exclusive_latents=[3, 5], **kwargs)
    crosscoder = CrossCoder(cfg)
    crosscoder.set_normalization([0.5, 2.0], torch.randn(2, 8) * 0.1)
    return crosscoder


def check_constraints(crosscoder: CrossCoder) -> None:
    """Tied rows equal across models (exactly, in the working space), exclusive rows exactly zero elsewhere."""
    groups = crosscoder.cfg.latent_groups()
    vectors = crosscoder.decoder_vectors(normalized=True).detach()
    tied = vectors[groups["designated shared"].start:groups["designated shared"].stop]
    assert torch.equal(tied[:, 0], tied[:, 1])
    assert (vectors[groups["only base"].start:groups["only base"].stop, 1] == 0).all()
    assert (vectors[groups["only chat"].start:groups["only chat"].stop, 0] == 0).all()
    relative = relative_norms(crosscoder)
    assert (relative[groups["only base"].start:groups["only base"].stop] == 0).all()
    assert (relative[groups["only chat"].start:groups["only chat"].stop] == 1).all()
    assert torch.allclose(relative[groups["designated shared"].start:groups["designated shared"].stop],
                          torch.tensor(0.5))


def train_steps(crosscoder: CrossCoder, steps: int = 15) -> None:
    source = SyntheticSource()
    optimizer = torch.optim.Adam(crosscoder.parameters(), lr=1e-2)
    crosscoder.train()
    for _ in range(steps):
        losses = crosscoder.losses(source.next_activations(64), l1_coeff=0.1)
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
    crosscoder.eval()


@pytest.mark.parametrize(("activation", "k"), SPARSITY)
def test_constraints_hold_through_training_save_load_and_folding(tmp_path, activation, k):
    crosscoder = variant(activation, k)
    check_constraints(crosscoder)
    before = crosscoder.W_dec_tied.detach().clone()
    train_steps(crosscoder)
    assert not torch.equal(crosscoder.W_dec_tied, before), "the tied vectors train"
    check_constraints(crosscoder)
    x = SyntheticSource().next_activations(50)
    folder = save(crosscoder, tmp_path / "cc")
    reloaded = load(folder)
    assert reloaded.cfg.variant == "designated-shared+dedicated" and reloaded.cfg.exclusive_latents == [3, 5]
    check_constraints(reloaded)
    assert torch.equal(reloaded(x), crosscoder(x))
    reloaded.fold_scaling()
    check_constraints(reloaded)
    assert torch.allclose(reloaded(x), crosscoder(x), atol=1e-5)
    check_constraints(load(save(reloaded, tmp_path / "folded")))


def test_the_tied_decoder_is_one_parameter_and_the_mask_is_not_saved(tmp_path):
    crosscoder = variant("relu", None)
    names = dict(crosscoder.named_parameters())
    assert names["W_dec_tied"].shape == (4, 8)
    state = crosscoder.state_dict()
    assert "decoder_mask" not in state and "W_dec_tied" in state
    assert (state["W_dec"][:4] == 0).all(), "the tied rows of W_dec are unused and zero"


def test_designated_latents_pay_a_scaled_penalty():
    crosscoder = variant("relu", None)
    x = SyntheticSource().next_activations(40)
    latents = crosscoder.encode(x).detach()
    weights = crosscoder.code_weights().detach().clone()
    weights[:4] *= 0.2
    expected = (latents @ weights).mean()
    assert torch.allclose(crosscoder.losses(x).sparsity, expected, rtol=1e-5)


def test_table_and_bad_partitions():
    crosscoder = variant("relu", None)
    table = latent_table(crosscoder)
    assert (table.loc[27:31, "class"] == "chat-only").all() and (table.loc[24:26, "class"] == "base-only").all()
    with pytest.raises(ValueError, match="exceed d_hidden"):
        CrossCoderConfig(d_model=8, d_hidden=8, shared_latents=4, exclusive_latents=[3, 3])
    with pytest.raises(ValueError, match="one count per model"):
        CrossCoderConfig(d_model=8, d_hidden=8, exclusive_latents=[3])
