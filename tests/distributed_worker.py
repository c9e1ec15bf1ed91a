"""Launched by ``test_distributed`` under ``torch.distributed.run`` (gloo, CPU): ``-m tests.distributed_worker
OUT``. For relu and batchtopk it trains a tiny crosscoder 3 steps, resumes from the checkpoint rank 0 wrote,
trains 3 more, and saves the final weights to ``OUT/{activation}-w{world_size}.pt``. At world size 1 it also
tries to resume the world-2 run and writes the error to ``OUT/resume-mismatch.txt``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.distributed import end_rank, init_from_env, rank_and_world
from helpers.training.run_folder import CheckpointDirError
from helpers.training.trainer import TrainConfig, Trainer
from tests.fakes import GlobalBatchSlices

GLOBAL_BATCH, STEPS = 32, 6


def crosscoder(activation: str) -> CrossCoder:
    """Small enough to run in a second, with latents that die (after 64 tokens) so the aux-k loss runs."""
    return CrossCoder(CrossCoderConfig(d_model=8, d_hidden=64, activation=activation,
                                       k=4 if activation == "batchtopk" else None, dead_after_tokens=64, seed=1))


def run(out: Path, activation: str) -> None:
    _, world = rank_and_world()
    folder = out / f"{activation}-w{world}"
    cfg = TrainConfig(num_tokens=GLOBAL_BATCH * STEPS, batch_size=GLOBAL_BATCH, lr=1e-2, l1_coeff=0.05, log_every=1,
                      checkpoint_dir=str(folder))
    Trainer(crosscoder(activation), GlobalBatchSlices(), cfg).train(steps=STEPS // 2)
    trainer = Trainer.resume(folder, GlobalBatchSlices())
    trainer.train()
    if rank_and_world()[0] == 0:
        state = {"weights": trainer.crosscoder.state_dict(), "history": trainer.history}
        torch.save(state, out / f"{activation}-w{world}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_from_env()
    for activation in ("relu", "batchtopk"):
        run(out, activation)
    if rank_and_world()[1] == 1 and (out / "relu-w2").is_dir():
        try:
            Trainer.resume(out / "relu-w2", GlobalBatchSlices())
        except CheckpointDirError as error:
            (out / "resume-mismatch.txt").write_text(str(error))
    end_rank()
