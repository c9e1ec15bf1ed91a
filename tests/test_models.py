"""load_model_pair: the toy pair, and every refusal a user can hit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers.activations import models
from helpers.activations.models import GatedModelError, ModelPairError, load_model_pair
from helpers.activations.sites import SiteError, hook_layer
from helpers.toy.shipped import toy_pair_path


def test_toy_pair_loads_with_hook_point():
    pair = load_model_pair("toy")
    assert pair.names == ["toy:base", "toy:chat"] and pair.d_model == 128 and pair.n_layers == 4
    assert pair.name == "toy" and pair.roles == ["base", "chat"]
    assert pair.hook_point == pair.profile.hook_point == "blocks.3.hook_resid_post"
    tokens = pair.tokenizer("def f(x):\n    return x", return_tensors="pt")["input_ids"]
    assert tokens[0, 0] == pair.tokenizer.bos_token_id
    assert not torch.equal(pair.base(tokens), pair.chat(tokens))


def test_unknown_pair_name():
    with pytest.raises(ModelPairError, match="Did you mean.*'toy'"):
        load_model_pair("tyo")


def test_models_named_directly_need_a_hook_point():
    with pytest.raises(ModelPairError, match="a hook point is needed"):
        load_model_pair(str(toy_pair_path() / "base"), str(toy_pair_path() / "chat"))
    with pytest.raises(ModelPairError, match="got ''"):
        load_model_pair("toy", hook_point="")


def test_at_moves_the_same_models_to_another_site(toy_pair):
    moved = toy_pair.at("blocks.1.hook_resid_pre")
    assert moved.models is toy_pair.models and moved.hook_point == "blocks.1.hook_resid_pre"
    with pytest.raises(ModelPairError, match="close matches"):
        toy_pair.at("blocks.1.hook_resid_pree")


def test_missing_hook_point_lists_close_matches():
    with pytest.raises(ModelPairError, match="blocks.3.hook_resid_pre"):
        load_model_pair("toy", hook_point="blocks.3.hook_resid_pree")


def test_different_tokenizer_is_refused(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(toy_pair_path() / "chat", other)
    tokenizer_file = other / "tokenizer.json"
    data = json.loads(tokenizer_file.read_text())
    vocab = data["model"]["vocab"]
    vocab["def"], vocab["class"] = vocab["class"], vocab["def"]  # same tokens, different ids
    tokenizer_file.write_text(json.dumps(data))
    with pytest.raises(ModelPairError, match="different tokenizers"):
        load_model_pair(str(toy_pair_path() / "base"), str(other), hook_point="blocks.0.hook_resid_pre")


def test_different_width_is_refused(tmp_path):
    from transformers import AutoConfig, AutoTokenizer, Gemma2ForCausalLM

    config = AutoConfig.from_pretrained(toy_pair_path() / "base")
    config.hidden_size, config.head_dim = 64, 16
    Gemma2ForCausalLM(config).save_pretrained(tmp_path / "narrow")
    AutoTokenizer.from_pretrained(toy_pair_path() / "base").save_pretrained(tmp_path / "narrow")
    with pytest.raises(ModelPairError, match="different widths"):
        load_model_pair(str(toy_pair_path() / "base"), str(tmp_path / "narrow"), hook_point="blocks.0.hook_resid_pre")


def test_gated_model_without_token(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(GatedModelError, match="huggingface-cli login"):
        load_model_pair("gemma-2-2b")


def test_not_a_model_name():
    with pytest.raises(ModelPairError, match="neither a local folder nor a Hub model id"):
        models.load_model("no such model")


def test_hook_layer():
    assert hook_layer("blocks.14.hook_resid_pre") == 14
    with pytest.raises(SiteError):
        hook_layer("hook_embed")
