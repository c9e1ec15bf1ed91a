"""Trainer: the schedule, exact resume, NaN handling, Ctrl-C, and that training actually learns."""

from __future__ import annotations

import pytest
import torch

from helpers.buffer import ShufflingBuffer
from helpers.checkpoints import load
from helpers.crosscoder import CrossCoder, CrossCoderConfig
from helpers.training import TrainConfig, Trainer, TrainingDivergedError

from .fakes import SyntheticSource


def make(tmp_path, activation="relu", nan_after=None, name="run", **train_kwargs):
    cfg = CrossCoderConfig(d_model=8, d_hidden=32, activation=activation, k=4 if activation != "relu" else None,
                           dead_after_tokens=64, seed=1)
    buffer = ShufflingBuffer(SyntheticSource(nan_after=nan_after), buffer_tokens=96, seed=3)
    settings = dict(num_tokens=32 * 40, batch_size=32, lr=1e-2, l1_coeff=0.05, log_every=1,
                    checkpoint_dir=str(tmp_path / name)) | train_kwargs
    train_cfg = TrainConfig(**settings)
    return Trainer(CrossCoder(cfg), buffer, train_cfg)


def test_schedule_warmup_and_decay():
    cfg = TrainConfig(num_tokens=100 * 10, batch_size=10, lr=1.0, l1_coeff=2.0, k_start=40, k_anneal_frac=0.1)
    assert cfg.total_steps == 100
    assert cfg.l1_coeff_at(0) == pytest.approx(2.0 / 5) and cfg.l1_coeff_at(4) == 2.0 and cfg.l1_coeff_at(50) == 2.0
    assert cfg.lr_at(79) == 1.0 and cfg.lr_at(90) == pytest.approx(0.5) and cfg.lr_at(99) == pytest.approx(0.05)
    assert cfg.k_at(0, 10) == 40 and cfg.k_at(5, 10) == 25 and cfg.k_at(50, 10) == 10


@pytest.mark.parametrize("activation", ["relu", "batchtopk"])
def test_resume_is_bit_identical(tmp_path, activation):
    straight = make(tmp_path, activation, name="straight")
    straight.train()
    first_half = make(tmp_path, activation, name="halves")
    first_half.train(steps=20)
    resumed = Trainer.resume(tmp_path / "halves", ShufflingBuffer(SyntheticSource(), buffer_tokens=96, seed=3))
    assert resumed.step == 20
    resumed.train()
    for name, tensor in straight.crosscoder.state_dict().items():
        assert torch.equal(resumed.crosscoder.state_dict()[name], tensor), name
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_training_reduces_loss(tmp_path):
    trainer = make(tmp_path, num_tokens=32 * 200)
    history = trainer.train()
    assert history[-1]["reconstruction"] < 0.5 * history[0]["reconstruction"]
    assert history[-1]["explained_variance"] > 0.5


def test_nan_stops_with_clear_error_and_loadable_checkpoint(tmp_path):
    trainer = make(tmp_path, nan_after=32 * 15, checkpoint_every=5)
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 15.*Last good checkpoint: .*step_0000015"):
        trainer.train()
    crosscoder = load(Trainer.latest_checkpoint(tmp_path / "run"))
    assert all(torch.isfinite(p).all() for p in crosscoder.parameters())


def test_ctrl_c_saves_a_checkpoint(tmp_path):
    trainer = make(tmp_path)
    original = trainer.buffer.next_batch
    calls = {"n": 0}

    def interrupting(batch_size):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(batch_size)

    trainer.buffer.next_batch = interrupting
    trainer.train()
    assert trainer.step == 7
    assert Trainer.latest_checkpoint(tmp_path / "run").name == "step_0000007"
