"""Bad input that used to be accepted silently or refused with a raw error: each is a clear error now."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.activations.data import SourceExhaustedError, ToyTokenSource
from helpers.activations.hub_data import HFTokenSource
from helpers.activations.sites import harvest
from helpers.analysis.evals import splice_metrics
from helpers.analysis.latents import encode_tokens
from helpers.crosscoder.model import CrossCoder


def test_losses_refuse_a_single_model_slot_instead_of_broadcasting(small_cfg, activations):
    crosscoder = CrossCoder(small_cfg)
    with pytest.raises(ValueError, match=r"shape \[batch, 2, 16\], got \(64, 1, 16\)"):
        crosscoder.losses(activations[:, :1])
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2, 16\], got \(64, 1, 16\)"):
        crosscoder.normalize(activations[:, :1])


def test_token_ids_outside_the_vocabulary_are_refused(toy_pair):
    from helpers import from_pretrained

    tokens = torch.tensor([[2, 5, 7, 4096]])  # the toy vocabulary has 2,048 ids
    for call in (lambda: harvest(toy_pair.models, tokens, toy_pair.hook_point),
                 lambda: encode_tokens(toy_pair, from_pretrained("toy-l3"), tokens),
                 lambda: splice_metrics(toy_pair, from_pretrained("toy-l3"), [tokens], progress=False)):
        with pytest.raises(ValueError, match=r"token ids must lie in \[0, 2048\).*got 2\.\.4096.*another tokenizer"):
            call()
    with pytest.raises(ValueError, match="integer tensor"):
        harvest(toy_pair.models, tokens.float(), toy_pair.hook_point)
    with pytest.raises(ValueError, match=r"got -1\.\.3"):
        harvest(toy_pair.models, torch.tensor([[-1, 3]]), toy_pair.hook_point)


def test_an_empty_hook_point_is_an_error_not_the_default(toy_pair):
    from helpers.activations.models import ModelPairError, load_model_pair
    from helpers.crosscoder.config import CrossCoderConfig

    with pytest.raises(ModelPairError, match="got ''"):
        load_model_pair("toy", hook_point="")
    with pytest.raises(ValueError, match="hook_point must be a hook name"):
        CrossCoderConfig(d_model=4, d_hidden=8, hook_point="")


def test_token_sources_refuse_non_positive_batches(toy_tokenizer):
    source = ToyTokenSource(toy_tokenizer, seq_len=32)
    for bad in (-3, 0):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            source.next_batch(bad)


def test_missing_column_and_empty_dataset_are_named(tmp_path, toy_tokenizer):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"content": "def f(): pass"}) + "\n")
    with pytest.raises(ValueError, match="no column 'text'; its columns are \\['content'\\]"):
        HFTokenSource("json", toy_tokenizer, seq_len=8, column="text", data_files=str(tmp_path / "rows.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SourceExhaustedError, match="is empty"):
        HFTokenSource("json", toy_tokenizer, seq_len=8, column="text", data_files=str(tmp_path / "empty.jsonl"))
