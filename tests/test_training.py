"""Trainer: the schedule, exact resume, NaN handling, Ctrl-C, and that training actually learns."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from helpers.activations.buffer import ShufflingBuffer
from helpers.crosscoder.checkpoints import load
from helpers.training.run_folder import CheckpointDirError
from helpers.training.trainer import TrainConfig, Trainer, TrainingDivergedError

from .fakes import SyntheticSource, tiny_trainer


def make(tmp_path, activation="relu", nan_after=None, name="run", **train_kwargs):
    return tiny_trainer(tmp_path / name, activation, nan_after, **train_kwargs)


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


def interrupt_on_call(trainer, calls_to_interrupt: set[int]):
    """Send this process a real SIGINT from inside the buffer on the given ``next_batch`` calls (mid-step)."""
    original, calls = trainer.buffer.next_batch, {"n": 0}

    def interrupting(batch_size):
        calls["n"] += 1
        if calls["n"] in calls_to_interrupt:
            os.kill(os.getpid(), signal.SIGINT)
        return original(batch_size)

    trainer.buffer.next_batch = interrupting


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    straight = make(tmp_path, name="straight")
    straight.train()
    trainer = make(tmp_path)
    interrupt_on_call(trainer, {8})
    trainer.train()
    assert trainer.step == 8, "the interrupted step completes"
    assert Trainer.latest_checkpoint(tmp_path / "run").name == "step_0000008"
    resumed = Trainer.resume(tmp_path / "run", ShufflingBuffer(SyntheticSource(), buffer_tokens=96, seed=3))
    resumed.train()
    for name, tensor in straight.crosscoder.state_dict().items():
        assert torch.equal(resumed.crosscoder.state_dict()[name], tensor), name
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handler is restored"


def test_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    trainer = make(tmp_path, checkpoint_every=5)
    original = trainer.buffer.next_batch
    calls = {"n": 0}

    def interrupting(batch_size):
        calls["n"] += 1
        if calls["n"] == 8:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(batch_size)

    trainer.buffer.next_batch = interrupting
    trainer.train()
    assert Trainer.latest_checkpoint(tmp_path / "run").name == "step_0000005", "the last complete one stays"


def test_fresh_run_refuses_a_folder_of_another_run(tmp_path):
    first = make(tmp_path, checkpoint_every=10)
    first.train()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    second = make(tmp_path, checkpoint_every=10)
    with pytest.raises(CheckpointDirError, match="holds the checkpoints of another run.*Trainer.resume"):
        second.train()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before, "nothing there was changed"
    assert load(Trainer.latest_checkpoint(tmp_path / "run")) is not None


def test_rotation_keeps_the_newest_and_latest_always_complete(tmp_path):
    trainer = make(tmp_path, checkpoint_every=3, keep_checkpoints=2)
    trainer.train()
    names = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("step_"))
    assert names == ["step_0000039", "step_0000040"]
    assert not list((tmp_path / "run").glob(".step_*")), "no staging or trash left"


def test_saving_a_step_twice_writes_it_once(tmp_path):
    """A periodic save at the last step and the final save: the second leaves the first in place."""
    trainer = make(tmp_path, checkpoint_every=40)
    trainer.train()
    folder = Trainer.latest_checkpoint(tmp_path / "run")
    stamp = (folder / "crosscoder.safetensors").stat().st_mtime_ns
    assert trainer.save_checkpoint() == folder
    assert (folder / "crosscoder.safetensors").stat().st_mtime_ns == stamp


def test_latest_pointing_at_a_missing_folder_is_a_clear_error(tmp_path):
    trainer = make(tmp_path, checkpoint_every=10)
    trainer.train()
    (tmp_path / "run" / "latest.txt").write_text("step_0000099")
    with pytest.raises(CheckpointDirError, match="names 'step_0000099'.*checkpoints there"):
        Trainer.latest_checkpoint(tmp_path / "run")


def test_non_finite_gradient_stops_before_the_weights_change(tmp_path):
    trainer = make(tmp_path, checkpoint_every=5)
    original = trainer.crosscoder.losses

    def poisoned(x, **kwargs):
        losses = original(x, **kwargs)
        if trainer.step == 12:  # + sqrt(|b - b|): adds exactly 0 to the loss, and a NaN to b_enc's gradient
            b_enc = trainer.crosscoder.b_enc
            losses.total = losses.total + (b_enc - b_enc.detach()).abs().sqrt().sum()
        return losses

    trainer.crosscoder.losses = poisoned
    with pytest.raises(TrainingDivergedError, match="gradient norm is nan at step 12 although the loss is finite"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.crosscoder.parameters()), "the weights were not updated"
    crosscoder = load(Trainer.latest_checkpoint(tmp_path / "run"))
    assert all(torch.isfinite(p).all() for p in crosscoder.parameters())


def test_disk_full_cleans_up_and_names_the_last_checkpoint(tmp_path, monkeypatch):
    import errno

    trainer = make(tmp_path, checkpoint_every=5)
    trainer.train(steps=5)
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    expected = "could not write checkpoint step_0000010.*No space left.*step_0000005"
    with pytest.raises(CheckpointDirError, match=expected):
        trainer.train(steps=5)
    monkeypatch.setattr(torch, "save", real_save)
    assert not list((tmp_path / "run").glob(".step_*")), "the staging folder is gone"
    assert Trainer.latest_checkpoint(tmp_path / "run").name == "step_0000005"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("grad_clip", -1.0, "grad_clip must lie in"),
    ("lr", 0, "lr must lie in"),
    ("batch_size", -4, "batch_size must be an integer"),
    ("num_tokens", 16, "at least one batch"),
    ("l1_warmup_frac", 1.5, "l1_warmup_frac must lie in"),
    ("keep_checkpoints", 0, "keep_checkpoints must be an integer >= 1"),
    ("lr", "1e-3", "lr must be a finite number"),
    ("checkpoint_every", 2.5, "checkpoint_every must be an integer"),
    ("seed", True, "seed must be an integer"),
    ("threshold_start_step", -1, "threshold_start_step must be an integer >= 0"),
])
def test_train_config_refuses_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"num_tokens": 32 * 40, "batch_size": 32, field: value})


def test_resume_refuses_a_buffer_built_differently(tmp_path):
    trainer = make(tmp_path, checkpoint_every=10)
    trainer.train(steps=10)
    other = ShufflingBuffer(SyntheticSource(), buffer_tokens=96, seed=4)
    with pytest.raises(CheckpointDirError, match="trained on another buffer.*'seed': 3.*'seed': 4"):
        Trainer.resume(tmp_path / "run", other)


def test_train_steps_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        make(tmp_path).train(steps=-3)


def test_live_view_prints_a_line_per_update_outside_notebooks(capsys):
    from helpers.tutorial.live_view import LiveTrainingView

    every = LiveTrainingView(6, min_seconds=0, notebook=False)
    tiny_trainer(None, steps=6, log_every=2).train(on_log=every)
    throttled = LiveTrainingView(6, min_seconds=3600, notebook=False)
    trainer = tiny_trainer(None, steps=6, log_every=2)
    trainer.train(on_log=throttled)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert every.updates == 3 and throttled.updates == 2  # throttled: the first logged step and the last
    assert lines[0].startswith("step      2/6 | loss") and lines[-1].startswith("step      6/6")
    assert f"L0 {trainer.history[-1]['l0']:.1f}" in lines[-1] and "FVE base" in lines[-1]


def test_wandb_logging_is_off_by_default_and_offline_when_asked(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    assert TrainConfig().wandb_project is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    trainer = tiny_trainer(None, steps=3, wandb_project="crosscoder-test")
    trainer.train()
    wandb.finish()
    logged = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert logged, "an offline wandb run was written"


def test_new_crosscoder_estimates_scales_on_at_most_the_buffers_size_by_default(toy_pair):
    """50,000 activations, or fewer for a small buffer (the smoke scale's): drawn from the source, not the buffer."""
    from helpers.training.recipes import make_buffer, new_crosscoder, token_source_for

    buffer = make_buffer(toy_pair, token_source_for(toy_pair, seq_len=32), buffer_tokens=2048, model_batch_size=16)
    crosscoder = new_crosscoder(toy_pair, buffer, d_hidden=64)
    per_batch = 16 * 31  # BOS dropped
    assert 2048 <= buffer.source.tokens_harvested < 2048 + per_batch
    assert crosscoder.scale_factors.shape == (2,) and bool((crosscoder.scale_factors > 0).all())
    with pytest.raises(ValueError, match="scale_tokens"):
        new_crosscoder(toy_pair, buffer, scale_tokens=0, d_hidden=64)
