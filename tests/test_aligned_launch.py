"""A pair with separate tokenizers from the command line: its texts (``texts_for``), ``launch cache`` and
``launch train`` (notebook 10's toy-vs-llama, a few thousand aligned pairs)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from helpers import AlignedHarvestingSource, load_model_pair
from helpers.activations.buffer import DiskCacheSource
from helpers.activations.models import ModelPair, ModelPairError, SeparateTokenizers
from helpers.crosscoder.checkpoints import load
from helpers.registry import PAIRS, register_pair
from helpers.toy.corpus import paired_texts
from helpers.toy.shipped import toy_pair_path
from helpers.training.launch import main as launch
from helpers.training.recipes import texts_for
from helpers.training.run_folder import latest_checkpoint

TEMPLATE = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def pair():
    return load_model_pair("toy-vs-llama")


def test_texts_of_a_toy_pair_are_the_paired_texts(pair, toy_pair):
    assert texts_for(pair, 25) == paired_texts()[:25]
    assert len(texts_for(pair)) == len(paired_texts())
    with pytest.raises(ModelPairError, match="shares one tokenizer"):
        texts_for(toy_pair, 5)
    with pytest.raises(ValueError, match="n_texts must be"):
        texts_for(pair, 0)
    with pytest.raises(TypeError, match="pair"):
        texts_for("toy-vs-llama", 5)


def _hub_pair(tmp_path, data: dict) -> ModelPair:
    """A pair with separate tokenizers (the toy's and a chat-templated copy) carrying only what texts_for reads."""
    def jsonl(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(tmp_path / name)

    sources = {"text": {"path": "json", "column": "text",
                        "data_files": jsonl("text.jsonl", [{"text": f"doc {i}"} for i in range(9)])},
               "chat": {"path": "json", "column": "messages", "data_files": jsonl("chat.jsonl", [
                   {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                   for i in range(9)])},
               "tokenized": {"path": "json", "column": "input_ids",
                             "data_files": jsonl("ids.jsonl", [{"input_ids": [1, 2, 3]}])}}
    profile = register_pair("test-separate-hub", "toy:base", "toy:chat", hook_point="blocks.1.hook_resid_post",
                            tokenizers="separate", data={"kind": "hub", **{k: sources[k] for k in data["parts"]},
                                                         **data.get("extra", {})})
    PAIRS.pop("test-separate-hub")
    tokenizers = [AutoTokenizer.from_pretrained(toy_pair_path() / side) for side in ("base", "chat")]
    tokenizers[1].chat_template = TEMPLATE
    names = ["toy:base", "toy:chat"]
    return ModelPair(models=[SimpleNamespace(), SimpleNamespace()], names=names, tokenizer=SeparateTokenizers(names),
                     hook_point=profile.hook_point, profile=profile, tokenizers=tokenizers)


def test_texts_of_a_hub_pair_mix_text_and_rendered_chat(tmp_path):
    mixed = texts_for(_hub_pair(tmp_path, {"parts": ["text", "chat"], "extra": {"chat_fraction": 0.25}}), 8)
    # rows 3 and 7 are chat rows (floor((r + 1) / 4) > floor(r / 4)); a conversation is rendered with the chat
    # model's template, its BOS left out
    assert mixed == ["doc 0", "doc 1", "doc 2", "<user>q0\n<assistant>a0\n", "doc 3", "doc 4", "doc 5",
                     "<user>q1\n<assistant>a1\n"]
    assert texts_for(_hub_pair(tmp_path, {"parts": ["text"]}), 30) == [f"doc {i}" for i in range(9)]
    with pytest.raises(ValueError, match="names no text to read"):
        texts_for(_hub_pair(tmp_path, {"parts": ["tokenized"]}), 4)
    with pytest.raises(ValueError, match="chat_fraction"):
        texts_for(_hub_pair(tmp_path, {"parts": ["text", "chat"], "extra": {"chat_fraction": 1.5}}), 4)


def test_launch_caches_and_trains_a_pair_with_separate_tokenizers(pair, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    launch(["cache", "--pair", "toy-vs-llama", "--tokens", "3000", "--texts", "40", "--out", str(cache),
            "--storage-dtype", "float32"])
    cached = DiskCacheSource(str(cache))
    fresh = AlignedHarvestingSource(pair.models, pair.tokenizers, paired_texts()[:40], [pair.hook_point] * 2,
                                    texts_per_batch=pair.profile.settings["model_batch"])
    torch.testing.assert_close(cached.next_activations(3000), fresh.next_activations(3000))
    assert cached.fingerprint()["hook_point"] == pair.hook_point  # what launch train checks against the pair
    launch(["train", "--pair", "toy-vs-llama", "--cache", str(cache), "--out", str(run), "--d-hidden", "64",
            "--num-tokens", "1024", "--batch-size", "256", "--buffer-tokens", "1024", "--scale-tokens", "1000"])
    crosscoder = load(latest_checkpoint(run))
    assert crosscoder.cfg.model_names == ["toy:llama", "toy:chat"]
    assert crosscoder.cfg.d_hidden == 64
    harvested = tmp_path / "harvested"  # no cache: the models read the pair's texts on the fly
    launch(["train", "--pair", "toy-vs-llama", "--texts", "24", "--out", str(harvested), "--d-hidden", "64",
            "--num-tokens", "512", "--batch-size", "256", "--buffer-tokens", "1024", "--scale-tokens", "500"])
    assert load(latest_checkpoint(harvested)).cfg.model_names == ["toy:llama", "toy:chat"]
    with pytest.raises(SystemExit, match="--texts must be positive"):
        launch(["cache", "--pair", "toy-vs-llama", "--tokens", "10", "--texts", "0", "--out", str(tmp_path / "c2")])
