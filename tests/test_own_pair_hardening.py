"""The bad inputs and faults of issue 23 that are not about files or datasets (test_checkpoint_safety,
test_registry and test_data hold those): each is now a clear error naming the value, or a correct result."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import CrossCoder, CrossCoderConfig, from_pretrained
from helpers.activations.buffer import DiskCacheError, write_disk_cache
from helpers.analysis.steering import steered_logits_fn, steering_curve, vector_logits_fn
from helpers.methods.scoreboard import MethodOutput, scoreboard
from helpers.methods.token_divergence import token_kl
from helpers.toy.corpus import Question
from helpers.toy.organisms import OrganismPrompt
from helpers.training.config import TrainConfig
from helpers.training.gpu_plan import ModelShape, plan_memory
from helpers.training.trainer import Trainer
from helpers.tutorial.live_view import LiveTrainingView
from helpers.tutorial.notebook import choose_pair
from tests.fakes import SyntheticSource, tiny_trainer


@pytest.fixture(scope="module")
def release():
    return from_pretrained("toy-l3")


@pytest.mark.parametrize("strength", [math.nan, math.inf, -math.inf, "8"])
def test_steering_refuses_a_strength_that_is_not_a_finite_number(toy_pair, release, strength):
    """Before: a NaN or infinite strength returned all-NaN logits."""
    with pytest.raises(ValueError, match=r"strength must be a finite number, got"):
        steered_logits_fn(toy_pair, release, 591, strength)
    with pytest.raises(ValueError, match=r"strength must be a finite number"):
        steering_curve(toy_pair, release, 591, [1.0, strength], [Question("os", "getcwd", "", "", True)])


def test_steering_checks_the_vector_the_tokens_and_the_model(toy_pair, release):
    hook = toy_pair.hook_point
    with pytest.raises(ValueError, match=r"vector must be a floating-point tensor \[d_model=128\], got \(64,\)"):
        vector_logits_fn(toy_pair, torch.ones(64), 1.0, hook)
    with pytest.raises(ValueError, match="NaN or infinite"):
        vector_logits_fn(toy_pair, torch.full((128,), math.nan), 1.0, hook)
    with pytest.raises(ValueError, match=r"model_index must be an integer in \[0, 1\], got 2"):
        vector_logits_fn(toy_pair, torch.ones(128), 1.0, hook, model_index=2)
    with pytest.raises(Exception, match="does not exist in this model"):
        vector_logits_fn(toy_pair, torch.ones(128), 1.0, "blocks.3.hook_resid_pots")
    with pytest.raises(ValueError, match=r"vector_model must be an integer in \[0, 1\], got 5"):
        steered_logits_fn(toy_pair, release, 591, 1.0, vector_model=5)
    logits = vector_logits_fn(toy_pair, torch.ones(128), 1.0, hook)
    with pytest.raises(ValueError, match="tokens must not be empty"):
        logits(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 2048\)"):
        logits(torch.tensor([[2, 9999]]))
    with pytest.raises(ValueError, match="1025 tokens are longer than the model's context of 1024"):
        logits(torch.full((1, 1025), 5))


def test_token_kl_refuses_sequences_beyond_the_context(toy_pair):
    with pytest.raises(ValueError, match="longer than the model's context of 1024"):
        token_kl(toy_pair, [torch.full((1, 1030), 5)], progress=False)


@pytest.mark.parametrize(("change", "error"), [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"d_hidden": -5}, "d_hidden must be an integer >= 1, got -5"),
    ({"gpu_gib": math.nan}, "gpu_gib must be a finite number"),
    ({"gpu_gib": 0}, r"gpu_gib must lie in \(0"),
    ({"models": []}, "models must be a non-empty list of ModelShape"),
])
def test_plan_memory_refuses_sizes_that_are_not_sizes(change, error):
    """Before: batch_size=0 or a negative d_hidden was planned and said to fit."""
    gemma = ModelShape(n_params=2_614_341_888, d_model=2304, d_mlp=9216, n_heads=8, d_vocab=256_000)
    arguments = {"models": [gemma, gemma], "d_hidden": 16_384, "seq_len": 1024, "batch_size": 4096, "model_batch": 4,
                 "buffer_tokens": 1_000_000, "gpu_gib": 40.0}
    with pytest.raises(ValueError, match=error):
        plan_memory(**{**arguments, **change})
    with pytest.raises(ValueError, match="d_model must be an integer >= 1"):
        ModelShape(n_params=10, d_model=0, d_mlp=4, n_heads=1, d_vocab=8)


def test_losses_on_a_degenerate_batch_are_refused_not_minus_infinity(small_cfg, activations):
    """Before: one token gave explained variance -inf and an aux-k loss near 1e9; k=-1 failed deep in torch."""
    topk = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48, activation="topk", k=4))
    for crosscoder in (CrossCoder(small_cfg), topk):
        with pytest.raises(ValueError, match="a batch of 2 activations or more"):
            crosscoder.losses(activations[:1])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 48\], got -1"):
        topk.losses(activations, k=-1)
    with pytest.raises(ValueError, match="l1_coeff must be a finite number"):
        topk.losses(activations, l1_coeff=math.nan)
    two = topk.losses(activations[:2])
    assert all(math.isfinite(float(value.detach())) for value in (two.explained_variance, two.aux_k, two.total))


class StubBuffer:
    def next_batch(self, n: int) -> torch.Tensor:
        raise AssertionError("no batch may be drawn before the inputs are checked")


def test_k_start_is_checked_against_the_crosscoder_before_training():
    """Before: TrainConfig(k_start=64) with 16 latents failed deep in torch."""
    crosscoder = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=16, activation="batchtopk", k=4))
    with pytest.raises(ValueError, match=r"k_start must lie between the crosscoder's k \(4\) and d_hidden \(16\), "
                                         r"got 64"):
        Trainer(crosscoder, StubBuffer(), TrainConfig(num_tokens=1024, batch_size=256, k_start=64))
    with pytest.raises(ValueError, match="relu"):
        Trainer(CrossCoder(CrossCoderConfig(d_model=8, d_hidden=16)), StubBuffer(), TrainConfig(k_start=8))
    with pytest.raises(TypeError, match="needs a buffer with next_batch"):
        Trainer(crosscoder, [1, 2], TrainConfig(num_tokens=1024, batch_size=256))


def test_a_failing_logging_callback_is_reported_once_and_training_goes_on(tmp_path, capsys):
    """Before: a LiveTrainingView on a one-model run raised inside the loop, which stopped training and saved
    nothing."""
    trainer = tiny_trainer(tmp_path / "run", steps=6, log_every=1)
    calls = []

    def broken(record, history):
        calls.append(record["step"])
        raise KeyError("explained_variance_chat")

    history = trainer.train(on_log=broken)
    assert trainer.step == 6 and len(history) == 6 and calls == [1], "switched off after the first failure"
    assert capsys.readouterr().err.count("on_log (test_a_failing_logging_callback") == 1
    assert trainer.last_checkpoint is not None and trainer.last_checkpoint.name == "step_0000006"


def test_the_live_view_draws_a_one_model_run(capsys):
    view = LiveTrainingView(4, min_seconds=0, notebook=False)
    record = {"step": 1, "loss": 1.0, "l0": 3.0, "explained_variance_input": 0.5, "dead_fraction": 0.0}
    view(record, [record])
    assert "FVE input 0.500" in capsys.readouterr().out
    assert LiveTrainingView(4, roles=["base", "chat"], notebook=False).roles_of(record) == ("input",)
    with pytest.raises(ValueError, match="total_steps must be an integer >= 1"):
        LiveTrainingView(0)
    with pytest.raises(ValueError, match="roles must be a list"):
        LiveTrainingView(4, roles="base")


def test_a_disk_cache_killed_before_its_first_shard_resumes(tmp_path):
    """Before: a cache killed before its first progress file could not be resumed ('not empty')."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / ".shard_00000.npy.abc123.tmp").write_bytes(b"half a shard")  # the write that was killed
    done = write_disk_cache(SyntheticSource(), folder, n_tokens=1024, shard_tokens=512, storage_dtype="float32")
    assert json.loads((done / "metadata.json").read_text())["n_tokens"] == 1024
    claimed = tmp_path / "claimed"
    claimed.mkdir()
    (claimed / "progress.json").write_text(json.dumps({"shards": 0, "fingerprint": {"other": 1}}))
    with pytest.raises(DiskCacheError, match="cache of other activations"):
        write_disk_cache(SyntheticSource(), claimed, n_tokens=1024, shard_tokens=512, storage_dtype="float32")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiskCacheError, match="is a file"):
        write_disk_cache(SyntheticSource(), tmp_path / "file", n_tokens=1024)


def test_a_pair_written_in_the_notebook_wins_over_the_environment(monkeypatch, capsys):
    """Before: CROSSCODER_PAIR made notebook 08 ignore its own PAIR = 'toy-organisms' and fail twelve minutes in."""
    monkeypatch.setenv("CROSSCODER_PAIR", "toy")
    assert choose_pair("toy-organisms") == "toy-organisms"
    assert "wins over CROSSCODER_PAIR='toy'" in capsys.readouterr().out
    assert choose_pair(None) == "toy"
    with pytest.raises(Exception, match="PAIR must be a registered pair's name or None"):
        choose_pair(3)


def labelled(names):
    return [OrganismPrompt(f"User: q{i}?\nAssistant:", name, Question("m", f"f{i}", "", "", name is not None))
            for i, name in enumerate(names)]


def test_the_scoreboard_refuses_outputs_it_cannot_score():
    """Before: KeyError 'rank' without organism prompts; IndexError for a method with too few names."""
    prompts = labelled(["refusal", None, "refusal", None])
    good = MethodOutput("m", torch.rand(4, 3), [0, 1, 2], ["a", "b", "c"], [None, "refusal", None], 1.0)
    with pytest.raises(ValueError, match="every item needs a view and a name, got 3 views and 1 names"):
        MethodOutput("short", torch.rand(4, 3), [0], ["a", "b", "c"], [None], 1.0)
    with pytest.raises(ValueError, match=r"order names items outside \[0, 1\): \[2\]"):
        MethodOutput("short order", torch.rand(4, 3), [0, 2], ["a"], [None], 1.0)
    with pytest.raises(ValueError, match=r"order names items outside \[0, 3\): \[7\]"):
        MethodOutput("order", torch.rand(4, 3), [0, 7], ["a", "b", "c"], [None] * 3, 1.0)
    with pytest.raises(ValueError, match=r"scores must be \[n_prompts, n_items\]"):
        MethodOutput("flat", torch.rand(4), [0], ["a"], [None], 1.0)
    with pytest.raises(ValueError, match="prompts that carry an organism"):
        scoreboard([good], labelled([None, None, None, None]))
    with pytest.raises(ValueError, match=r"must score the 2 prompts.*'m': 4"):
        scoreboard([good], prompts[:2])
    assert scoreboard([good], prompts).loc[0, "rank"] == 2
