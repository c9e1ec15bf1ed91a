"""Data-parallel training: 2 gloo processes equal 1 process on the same global batches; data shards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.activations.buffer import DiskCacheSource, write_disk_cache
from helpers.activations.data import TokenShard
from tests.fakes import CountingTokenSource, SyntheticSource
from tests.shared import built_once, shared_folder

ROOT = Path(__file__).resolve().parents[1]


def launch(world_size: int, out: Path) -> None:
    """``torch.distributed.run`` with ``world_size`` CPU processes running ``tests.distributed_worker``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world_size}",
               "-m", "tests.distributed_worker", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def ddp_runs(tmp_path_factory, worker_id: str) -> Path:
    """The worker's runs at world sizes 2 and 1, once for all pytest-xdist workers."""
    def run_both(done: Path) -> None:
        done.parent.mkdir(exist_ok=True)
        launch(2, done.parent)
        launch(1, done.parent)
        done.write_text("2 and 1")

    return built_once(shared_folder(tmp_path_factory, worker_id) / "ddp" / "done.txt", run_both).parent


@pytest.mark.parametrize("activation", ["relu", "batchtopk"])
def test_two_ranks_train_as_one(ddp_runs, activation):
    one, two = (torch.load(ddp_runs / f"{activation}-w{w}.pt", weights_only=True) for w in (1, 2))
    for name, tensor in one["weights"].items():
        other = two["weights"][name]
        if tensor.is_floating_point():
            assert torch.allclose(tensor, other, atol=1e-5, rtol=0), (name, (tensor - other).abs().max())
        else:
            assert torch.equal(tensor, other), name  # dead-latent counters, the folded flag
    assert len(one["history"]) == len(two["history"]) == 6
    # the logged reconstruction loss is the mean over ranks' slices: the global batch's mean
    for a, b in zip(one["history"], two["history"]):
        assert a["reconstruction"] == pytest.approx(b["reconstruction"], rel=1e-4)
    if activation == "batchtopk":
        assert one["weights"]["threshold"] > 0
        assert one["history"][-1]["aux_k"] > 0  # dead latents appeared, so the aux-k path was compared too
        assert one["history"][-1]["l0"] == pytest.approx(two["history"][-1]["l0"])


def test_resume_at_another_world_size_is_refused(ddp_runs):
    message = (ddp_runs / "resume-mismatch.txt").read_text()
    assert "2 rank(s)" in message and "this one has 1" in message and "helpers.load(" in message


def test_token_shards_are_disjoint_and_cover_the_stream():
    whole = CountingTokenSource().next_batch(12)
    shards = [TokenShard(CountingTokenSource(), rank, 3) for rank in range(3)]
    parts = [shard.next_batch(4) for shard in shards]
    assert torch.equal(torch.cat(parts).sort(dim=0).values, whole.sort(dim=0).values)
    assert all(torch.equal(parts[r], whole[r::3]) for r in range(3))
    with pytest.raises(ValueError, match="rank must be"):
        TokenShard(CountingTokenSource(), 3, 3)


def test_disk_cache_shards_split_the_cache(tmp_path):
    folder = write_disk_cache(SyntheticSource(), tmp_path / "cache", n_tokens=100, shard_tokens=30,
                              storage_dtype="float32")
    whole = DiskCacheSource(folder).next_activations(100)
    first, second = (DiskCacheSource(folder, shard=(rank, 2)) for rank in range(2))
    assert torch.equal(torch.cat([first.next_activations(50), second.next_activations(50)]), whole)
    assert first.fingerprint()["shard"] == [0, 2]
    with pytest.raises(Exception, match="exhausted"):
        first.next_activations(1)
    assert np.isfinite(whole.numpy()).all()


def launch_command(cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
            "helpers.training.launch", "train", "--pair", "toy", "--cache", str(cache), "--out", str(out),
            "--num-tokens", "1024", "--batch-size", "256", "--buffer-tokens", "512", "--d-hidden", "32",
            "--scale-tokens", "256", "--activation", "batchtopk", "--k", "4"]


TOY_LABELS = {"models": ["base", "chat"], "hook_point": "blocks.3.hook_resid_post"}  # what harvesting the toy names


def test_command_line_trains_data_parallel_from_a_disk_cache(tmp_path):
    """``torchrun -m helpers.training.launch train --cache``: each rank reads its half; rank 0 writes the checkpoint."""
    cache = write_disk_cache(SyntheticSource(labels=TOY_LABELS), tmp_path / "cache", n_tokens=4096,
                             shard_tokens=1024, storage_dtype="float32")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = launch_command(cache, tmp_path / "run")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "step_0000004" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 4
    # each rank read its own half of the cache: 256 for the scale factors, then one 512-activation chunk
    assert [s["chunk_start"]["position"] for s in state["buffer_by_rank"]] == [256, 256]
    assert [f["source"]["shard"] for f in state["buffer_fingerprint_by_rank"]] == [[0, 2], [1, 2]]


def test_the_launcher_refuses_a_cache_of_another_pair_and_an_occupied_folder_before_any_work(tmp_path):
    """Before: a cache naming other models trained every step, and the checkpoint claimed the pair's site; an
    --out holding another run trained every step, then refused to save."""
    other = write_disk_cache(SyntheticSource(labels={"models": ["a", "b"], "hook_point": "blocks.1.hook_resid_pre"}),
                             tmp_path / "other", n_tokens=2048, shard_tokens=1024, storage_dtype="float32")
    started = time.monotonic()
    one_process = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 300,
                   "env": {**os.environ, "OMP_NUM_THREADS": "1"}}
    done = subprocess.run([sys.executable, *launch_command(other, tmp_path / "run")[5:]], **one_process)
    assert done.returncode != 0 and "does not cache pair 'toy': models: cached ['a', 'b'], pair ['base', 'chat']; " \
        "hook_point: cached 'blocks.1.hook_resid_pre'" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "run").exists()
    occupied = tmp_path / "occupied"
    (occupied / "step_0000004").mkdir(parents=True)
    (occupied / "latest.txt").write_text("step_0000004")
    (occupied / "run.json").write_text('{"run_id": "someone-else"}')
    toy_cache = write_disk_cache(SyntheticSource(labels=TOY_LABELS), tmp_path / "toy", n_tokens=2048,
                                 shard_tokens=1024, storage_dtype="float32")
    done = subprocess.run([sys.executable, *launch_command(toy_cache, occupied)[5:]], **one_process)
    assert done.returncode != 0 and "holds the checkpoints of another run (someone-else" in done.stderr
    assert "training crosscoder" not in done.stderr, "refused only after training"
    assert sorted(p.name for p in occupied.iterdir()) == ["latest.txt", "run.json", "step_0000004"]
    assert time.monotonic() - started < 120
