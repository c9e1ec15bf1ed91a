"""Steering with a latent's decoder vector, against forward passes with a hand-written hook."""

from __future__ import annotations

import pytest
import torch

from helpers import from_pretrained
from helpers.activations.diff import HookPointMismatchError
from helpers.analysis.latents import encode_tokens
from helpers.analysis.steering import latent_direction, steered_logits_fn
from helpers.training.recipes import token_source_for


@pytest.fixture(scope="module")
def release():
    return from_pretrained("toy-l3")


def test_steering_adds_the_decoder_vector_at_the_hook(toy_pair, release):
    tokens = token_source_for(toy_pair, seq_len=24, seed=3).next_batch(3)
    hook = toy_pair.hook_point
    codes = encode_tokens(toy_pair, release, tokens)
    latent = int((codes > 0).sum((0, 1)).argmax())
    vector = release.decoder_vectors(normalized=False)[latent, 1].detach()
    assert torch.equal(latent_direction(release, latent), vector)
    base = toy_pair.base
    for where, mask in (("all", torch.ones(tokens.shape)), ("active", (codes[..., latent] > 0).float())):
        shift = 3.0 * mask[..., None] * vector
        expected = base.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook, s=shift: a + s)])
        got = steered_logits_fn(toy_pair, release, latent, 3.0, model_index=0, where=where)(tokens)
        assert torch.allclose(got, expected, atol=1e-5), where
    assert 0 < mask.sum() < mask.numel(), "the active mask is a real subset of positions"
    assert torch.allclose(steered_logits_fn(toy_pair, release, latent, 0.0)(tokens), base(tokens), atol=1e-6)


def test_bad_steering_input(toy_pair, release):
    with pytest.raises(ValueError, match="where must be one of"):
        steered_logits_fn(toy_pair, release, 0, 1.0, where="everywhere")
    with pytest.raises(ValueError, match="latent ids must lie"):
        latent_direction(release, 5000)
    with pytest.raises(HookPointMismatchError):
        steered_logits_fn(toy_pair.at("blocks.1.hook_resid_pre"), release, 0, 1.0)
