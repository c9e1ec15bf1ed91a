"""The sparse TopK / BatchTopK step gives the dense step's loss and gradients (within 1e-4 relative)."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

from .fakes import SyntheticSource


def gradients(crosscoder: CrossCoder, x: torch.Tensor, sparse: bool, k: int | None = None):
    crosscoder.zero_grad(set_to_none=True)
    losses = crosscoder.losses(x, l1_coeff=0.3, sparse=sparse, k=k)
    losses.total.backward()
    return losses, {name: p.grad.clone() for name, p in crosscoder.named_parameters()}


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).norm() <= 1e-4 * b.norm() + 1e-7


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
@pytest.mark.parametrize("variant", [{}, {"shared_latents": 6, "exclusive_latents": [4, 4]}])
@pytest.mark.parametrize("dead", [False, True])
def test_sparse_step_equals_dense(activation, variant, dead):
    cfg = CrossCoderConfig(d_model=8, d_hidden=64, activation=activation, k=4, seed=4, aux_k=6,
                           dead_after_tokens=10, **variant)
    dense = CrossCoder(cfg)
    dense.set_normalization([0.7, 1.6])
    with torch.no_grad():
        dense.b_enc.copy_(torch.randn(64) * 0.1)
        if dead:
            dense.tokens_since_fired[::3] = 100  # a third of the latents count as dead: the aux-k loss is on
    sparse = copy.deepcopy(dense)
    x = SyntheticSource().next_activations(96)
    dense.train(), sparse.train()
    dense_losses, dense_grads = gradients(dense, x, sparse=False, k=8)
    sparse_losses, sparse_grads = gradients(sparse, x, sparse=True, k=8)
    for field in ("total", "reconstruction", "sparsity", "aux_k", "l0"):
        assert torch.allclose(getattr(sparse_losses, field), getattr(dense_losses, field), rtol=1e-4, atol=1e-6), field
    assert (dense_losses.aux_k > 0) == dead
    assert torch.allclose(sparse_losses.latents, dense_losses.latents, rtol=1e-5, atol=1e-6)
    for name, grad in dense_grads.items():
        assert close(sparse_grads[name], grad), name
    assert torch.equal(sparse.threshold, dense.threshold) and torch.equal(sparse.tokens_since_fired,
                                                                          dense.tokens_since_fired)


def test_sparse_is_the_default_for_topk_and_refused_for_relu():
    topk = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=32, activation="topk", k=3))
    x = SyntheticSource().next_activations(10)
    assert torch.equal(topk.losses(x).latents, topk.losses(x, sparse=True).latents)
    relu = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=32))
    with pytest.raises(ValueError, match="sparse step needs a topk / batchtopk"):
        relu.losses(x, sparse=True)


def test_batch_top_k_equals_the_flat_topk_including_a_row_that_holds_most_of_it():
    from helpers.crosscoder.sparse_step import batch_top_k

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(64, 500, generator=generator)
    scores[7] += 10  # one row holds far more than 4k of the batch's top: the exact fallback must run
    for s in (torch.rand(64, 500, generator=generator), scores):
        rows, cols, values = batch_top_k(s, 64 * 5, per_row=4 * 5)
        flat = s.flatten().topk(64 * 5)
        assert set((rows * 500 + cols).tolist()) == set(flat.indices.tolist())
        assert torch.equal(values.sort().values, flat.values.sort().values)
        assert (rows[1:] >= rows[:-1]).all(), "sorted by row"
