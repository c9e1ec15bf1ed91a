"""Harvesting, the shuffling buffer (no activation served twice), resume, scale factors, the disk cache."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.buffer import (
    DiskCacheSource,
    HarvestingSource,
    ShufflingBuffer,
    estimate_scale_factors,
    harvest,
    write_disk_cache,
)

from .fakes import CountingTokenSource, EchoModel, SyntheticSource


def echo_source(model_batch_size: int = 3) -> HarvestingSource:
    return HarvestingSource([EchoModel(0), EchoModel(1)], CountingTokenSource(), "blocks.2.hook_resid_pre",
                            model_batch_size=model_batch_size)


def test_every_served_activation_comes_from_fresh_tokens_and_bos_is_dropped():
    buffer = ShufflingBuffer(echo_source(), buffer_tokens=50, seed=1)
    served = torch.cat([buffer.next_batch(16) for _ in range(40)])  # 640 activations, 12+ refills
    token_ids = served[:, 0, 0]
    assert torch.equal(served[:, 0, 0], served[:, 1, 0]), "both models' rows come from the same token"
    assert served[:, 1, 2].eq(1).all() and served[:, 0, 2].eq(0).all(), "model order kept"
    assert token_ids.unique().numel() == token_ids.numel(), "an activation was served twice"
    assert (token_ids > 0).all() and (served[:, 0, 1] > 0).all(), "BOS (position 0) must be dropped"
    assert token_ids.max() <= 640 + 21 + 50, "the buffer must not harvest far beyond what it serves"


def test_batches_are_shuffled_across_sequences():
    buffer = ShufflingBuffer(echo_source(), buffer_tokens=70, seed=0)
    first = buffer.next_batch(20)[:, 0, 0]
    assert not torch.equal(first, first.sort().values)


@pytest.mark.parametrize("served_before", [0, 3, 7])
def test_buffer_resumes_exactly(served_before):
    buffer = ShufflingBuffer(echo_source(), buffer_tokens=50, seed=2)
    for _ in range(served_before):
        buffer.next_batch(16)
    state = buffer.state_dict()
    expected = torch.cat([buffer.next_batch(16) for _ in range(6)])
    resumed = ShufflingBuffer(echo_source(), buffer_tokens=50, seed=2)
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([resumed.next_batch(16) for _ in range(6)]), expected)


def test_memory_budget_and_storage_dtype():
    buffer = ShufflingBuffer(SyntheticSource(d_model=8), memory_gib=2**-20, storage_dtype="bfloat16",
                             n_models=2, d_model=8)
    assert buffer.buffer_tokens == 2**10 // (2 * 8 * 2)
    batch = buffer.next_batch(4)
    assert batch.dtype == torch.float32 and buffer._storage.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="exactly one"):
        ShufflingBuffer(SyntheticSource(), buffer_tokens=10, memory_gib=1.0)


def test_scale_factors_bring_mean_norm_to_sqrt_d_model():
    source = SyntheticSource(d_model=8)
    factors = estimate_scale_factors(source, 500)
    acts = SyntheticSource(d_model=8).next_activations(500)
    scaled_norms = (acts * factors[None, :, None]).norm(dim=-1).mean(0)
    assert torch.allclose(scaled_norms, torch.full((2,), math.sqrt(8)), rtol=1e-5)


def test_harvest_on_toy_pair_matches_full_forward_cache():
    from helpers.models import load_model_pair

    pair = load_model_pair("toy")
    tokens = pair.tokenizer(["def f(x):\n    return x + 1", "User: What does os.getcwd do?\nAssistant:"],
                            return_tensors="pt", padding=True)["input_ids"]
    for hook in ("blocks.3.hook_resid_pre", "blocks.1.hook_resid_post"):
        acts = harvest(pair.models, tokens, hook)
        assert acts.shape == (2, tokens.shape[1], 2, pair.d_model)
        for index, model in enumerate(pair.models):
            _, cache = model.run_with_cache(tokens, names_filter=[hook])
            assert torch.allclose(acts[:, :, index], cache[hook], atol=1e-5)


def test_disk_cache_round_trip_resume_and_exhaustion(tmp_path):
    expected = SyntheticSource().next_activations(100)
    write_disk_cache(SyntheticSource(), tmp_path / "cache", n_tokens=100, shard_tokens=30, storage_dtype="float32")
    assert sorted(p.name for p in (tmp_path / "cache").glob("shard_*.npy")) == [f"shard_{i:05d}.npy" for i in range(4)]
    source = DiskCacheSource(tmp_path / "cache")
    assert torch.equal(torch.cat([source.next_activations(25) for _ in range(4)]), expected)
    with pytest.raises(StopIteration, match="exhausted"):
        source.next_activations(1)
    twice = DiskCacheSource(tmp_path / "cache", epochs=2)
    twice.next_activations(90)
    assert torch.equal(twice.next_activations(20), torch.cat([expected[90:], expected[:10]]))


def test_disk_cache_bfloat16_and_resumed_write(tmp_path):
    folder = tmp_path / "cache"
    write_disk_cache(SyntheticSource(), folder, n_tokens=60, shard_tokens=20)
    (folder / "shard_00002.npy").unlink()
    (folder / "metadata.json").unlink()
    progress = (folder / "progress.json").read_text().replace('"shards": 3', '"shards": 2')
    progress = progress.replace('"position": 60', '"position": 40')
    (folder / "progress.json").write_text(progress)
    write_disk_cache(SyntheticSource(), folder, n_tokens=60, shard_tokens=20)  # resumes at shard 2
    write_disk_cache(SyntheticSource(), folder, n_tokens=60, shard_tokens=20)  # rerun on a finished cache
    read = DiskCacheSource(folder).next_activations(60)
    assert read.dtype == torch.bfloat16
    assert torch.equal(read, SyntheticSource().next_activations(60).to(torch.bfloat16))
