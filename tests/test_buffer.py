"""Harvesting, the shuffling buffer (no activation served twice), resume, scale factors, the disk cache."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.activations.buffer import (
    DiskCacheError,
    DiskCacheSource,
    HarvestingSource,
    ShufflingBuffer,
    estimate_scale_factors,
    harvest,
    write_disk_cache,
)
from helpers.activations.data import SourceExhaustedError

from .fakes import CountingTokenSource, EchoModel, SyntheticSource


def echo_source(model_batch_size: int = 3, hook_point: str = "blocks.2.hook_resid_pre") -> HarvestingSource:
    return HarvestingSource([EchoModel(0), EchoModel(1)], CountingTokenSource(), hook_point,
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
    from helpers.activations.models import load_model_pair

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
    with pytest.raises(SourceExhaustedError, match="exhausted: 100 served, 1 more requested"):
        source.next_activations(1)
    with pytest.raises(SourceExhaustedError):  # inside a generator it fails the loop instead of ending it early
        list(source.next_activations(1) for _ in range(3))
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


@pytest.mark.parametrize(("change", "difference"), [
    (dict(hook_point="blocks.1.hook_resid_pre"), "source.hook_point: 'blocks.2.hook_resid_pre' -> 'blocks.1"),
    (dict(storage_dtype="float32"), "storage_dtype: 'bfloat16' -> 'float32'"),
    (dict(n_tokens=90), "n_tokens: 60 -> 90"),
    (dict(shard_tokens=30), "shard_tokens: 20 -> 30"),
])
def test_a_cache_folder_is_never_reused_for_other_activations(tmp_path, change, difference):
    settings = dict(hook_point="blocks.2.hook_resid_pre", storage_dtype="bfloat16", n_tokens=60, shard_tokens=20)
    folder = tmp_path / "cache"
    write_disk_cache(echo_source(hook_point=settings["hook_point"]), folder, n_tokens=60, shard_tokens=20)
    (folder / "metadata.json").unlink()  # as if interrupted: a rerun would resume
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    settings |= change
    with pytest.raises(DiskCacheError, match=difference.replace(".", "\\.").replace("(", "\\(")):
        write_disk_cache(echo_source(hook_point=settings["hook_point"]), folder, n_tokens=settings["n_tokens"],
                         shard_tokens=settings["shard_tokens"], storage_dtype=settings["storage_dtype"])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "the cache was left as it was"


def test_a_finished_cache_refuses_other_settings_and_serves_only_its_own(tmp_path):
    folder = tmp_path / "cache"
    write_disk_cache(echo_source(), folder, n_tokens=40, shard_tokens=20)
    with pytest.raises(DiskCacheError, match="hook_point"):
        write_disk_cache(echo_source(hook_point="blocks.3.hook_resid_pre"), folder, n_tokens=40, shard_tokens=20)
    assert DiskCacheSource(folder, fingerprint=echo_source().fingerprint()).next_activations(40).shape == (40, 2, 4)
    with pytest.raises(DiskCacheError, match="caches other activations.*hook_point"):
        DiskCacheSource(folder, fingerprint=echo_source(hook_point="blocks.3.hook_resid_pre").fingerprint())


def test_shards_are_checked_against_the_metadata(tmp_path):
    import numpy as np

    folder = tmp_path / "cache"
    write_disk_cache(SyntheticSource(), folder, n_tokens=60, shard_tokens=20, storage_dtype="float32")
    good = (folder / "shard_00001.npy").read_bytes()
    np.save(folder / "shard_00001.npy", np.zeros((20, 2, 8), dtype=np.float16))  # another run's shard
    with pytest.raises(DiskCacheError, match="shard_00001.npy holds \\(20, 2, 8\\) float16.*float32"):
        DiskCacheSource(folder)
    (folder / "shard_00001.npy").write_bytes(good)
    (folder / "shard_00002.npy").unlink()
    with pytest.raises(DiskCacheError, match="shard_00002.npy is missing"):
        DiskCacheSource(folder)


def test_a_foreign_folder_is_not_written_into(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DiskCacheError, match="not empty and holds no activation cache"):
        write_disk_cache(SyntheticSource(), tmp_path, n_tokens=20, shard_tokens=10)


@pytest.mark.parametrize("bad", [-16, 0, 2.5])
def test_non_positive_batch_sizes_are_refused_not_looped_on(bad):
    buffer = ShufflingBuffer(SyntheticSource(), buffer_tokens=10)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        buffer.next_batch(bad)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        echo_source().next_activations(bad)
