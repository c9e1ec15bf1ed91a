"""Checkpoints are never lost or mixed: a save killed at any moment leaves the old checkpoint or the new one,
whole; config files are read strictly; a folder with several formats, or tensors its config does not explain,
is refused."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import CheckpointError, CrossCoder, CrossCoderConfig, from_pretrained, load, save
from helpers.crosscoder.checkpoints import NATIVE_CFG, NATIVE_WEIGHTS, STALE_AFTER_S
from tests.save_kill_worker import candidates, save_forever

KILLS = 24


def which(crosscoder: CrossCoder, known: dict[str, CrossCoder]) -> str:
    """The name of the known checkpoint that ``crosscoder`` is, weights and config alike; fails on a mix."""
    for name, reference in known.items():
        if torch.equal(crosscoder.W_enc, reference.W_enc):
            assert crosscoder.cfg.activation == reference.cfg.activation, f"{name}'s weights with another config"
            assert crosscoder.cfg.dec_init_norm == reference.cfg.dec_init_norm, f"{name}'s weights, other config"
            assert torch.equal(crosscoder.W_dec, reference.W_dec), f"{name}'s encoder with another decoder"
            return name
    raise AssertionError("the folder holds weights of none of the saved checkpoints")


def test_a_save_killed_at_random_moments_leaves_the_old_or_the_new_checkpoint_whole(tmp_path):
    known = candidates()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.save_kill_worker"])
    rng = random.Random(0)
    seen = []
    for trial in range(KILLS):
        folder = tmp_path / f"trial{trial}"
        save(known["old"], folder)
        ready = context.Event()
        worker = context.Process(target=save_forever, args=(str(folder), ready))
        worker.start()
        assert ready.wait(60), "the worker did not start"
        time.sleep(rng.uniform(0.0, 0.3))
        worker.kill()  # SIGKILL: no cleanup runs
        worker.join()
        seen.append(which(load(folder), known))
    assert len(set(seen)) >= 2, f"every kill landed on the same checkpoint ({seen}): the kills are not mid-run"


def test_a_cfg_json_from_another_save_yields_to_the_weights_own_config(tmp_path):
    """A kill between the weights' rename and cfg.json's leaves the new weights beside the old cfg.json."""
    known = candidates()
    save(known["relu"], tmp_path / "new")
    save(known["topk"], tmp_path / "old")
    (tmp_path / "new" / NATIVE_CFG).write_text((tmp_path / "old" / NATIVE_CFG).read_text())
    assert which(load(tmp_path / "new"), known) == "relu"
    (tmp_path / "new" / NATIVE_CFG).unlink()  # killed during the first save: no cfg.json yet
    assert which(load(tmp_path / "new"), known) == "relu"


def test_stale_temporaries_of_dead_saves_are_ignored_then_cleaned(tmp_path, small_cfg):
    crosscoder = CrossCoder(small_cfg)
    save(crosscoder, tmp_path)
    stale = tmp_path / f".{NATIVE_WEIGHTS}.abc123.tmp"
    fresh = tmp_path / f".{NATIVE_WEIGHTS}.def456.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"a save in progress")
    os.utime(stale, (time.time() - STALE_AFTER_S - 1,) * 2)
    load(tmp_path)  # ignored
    save(crosscoder, tmp_path)
    assert not stale.exists() and fresh.exists()


def test_a_misspelt_config_key_is_an_error_with_the_close_match(tmp_path, small_cfg):
    save(CrossCoder(small_cfg), tmp_path)
    cfg = json.loads((tmp_path / NATIVE_CFG).read_text())
    cfg["activaton"] = "batchtopk"
    for name in ("save_id",):  # a hand-edited cfg.json: no longer tied to the weights' copy
        cfg.pop(name)
    (tmp_path / NATIVE_CFG).write_text(json.dumps(cfg))
    weights = load_file(str(tmp_path / NATIVE_WEIGHTS))
    save_file(weights, str(tmp_path / NATIVE_WEIGHTS))  # weights without an embedded config (older saves)
    with pytest.raises(CheckpointError, match=r"'activaton' \(did you mean 'activation'\?\)"):
        load(tmp_path)


def test_a_stored_variant_that_the_fields_contradict_is_refused():
    cfg = CrossCoderConfig(d_model=8, d_hidden=16, shared_latents=4).to_dict()
    cfg.pop("shared_latents")
    with pytest.raises(ValueError, match="variant 'designated-shared'"):
        CrossCoderConfig.from_dict(cfg)


def test_a_tensor_the_config_does_not_explain_is_refused(tmp_path, small_cfg):
    save(CrossCoder(small_cfg), tmp_path)
    weights = load_file(str(tmp_path / NATIVE_WEIGHTS))
    weights["W_dec_tied"] = torch.zeros(4, small_cfg.d_model)
    save_file(weights, str(tmp_path / NATIVE_WEIGHTS))
    with pytest.raises(CheckpointError, match=r"holds tensors \['W_dec_tied'\] that its config does not explain"):
        load(tmp_path)


def test_a_folder_with_several_formats_is_refused_unless_one_is_named(tmp_path, small_cfg):
    crosscoder = CrossCoder(small_cfg)
    save(crosscoder, tmp_path)
    torch.save({name: getattr(crosscoder, name).detach() for name in ("W_enc", "W_dec", "b_enc", "b_dec")},
               tmp_path / "cc_weights.pt")
    with pytest.raises(CheckpointError, match=r"several formats \['native', 'replication'\]"):
        load(tmp_path)
    assert torch.equal(load(tmp_path, format="native").W_enc, crosscoder.W_enc)
    with pytest.raises(ValueError, match="format must be one of"):
        load(tmp_path, format="nativ")


def test_a_mistyped_local_folder_is_reported_as_local(tmp_path, small_cfg, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(CrossCoder(small_cfg), tmp_path / "runs" / "my-crosscoder")
    with pytest.raises(FileNotFoundError, match=r"no such folder: runs/my-crosscodr .*'my-crosscoder'"):
        from_pretrained("runs/my-crosscodr")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        from_pretrained("./elsewhere/crosscoder")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        from_pretrained("a-file")
    with pytest.raises(TypeError, match="release name, a Hub repo id or a folder"):
        from_pretrained(3)


def test_save_refuses_what_it_cannot_write_before_writing(tmp_path, small_cfg):
    with pytest.raises(ValueError, match="extra_cfg must be plain JSON"):
        save(CrossCoder(small_cfg), tmp_path / "nan", extra_cfg={"loss": float("nan")})
    assert not (tmp_path / "nan").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        save(CrossCoder(small_cfg), tmp_path / "file")
    with pytest.raises(TypeError, match="needs a CrossCoder"):
        save({"W_enc": torch.zeros(1)}, tmp_path / "dict")
