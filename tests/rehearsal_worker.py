"""Launched by ``test_rehearsal`` with ``HF_HOME`` set to a rehearsal (``helpers.rehearsal``) and
``HF_HUB_OFFLINE=1``: ``python -m tests.rehearsal_worker OUT.json``. Walks the Gemma-2-2B path and the own-pair
path through the public API, exactly as a user on the real Hub would, and writes what it measured."""

from __future__ import annotations

import json
import math
import sys

import torch

from helpers import load_diff, load_model_pair, make_buffer, new_crosscoder, register_pair, token_source_for
from helpers.data import MixedTokenSource
from helpers.evals import reconstruction_metrics, splice_metrics
from helpers.recipes import DataTokenizerError, activation_batches
from helpers.rehearsal import OWN_PAIR, REPLICATION_DATASET
from helpers.training import TrainConfig, Trainer


def gemma() -> dict:
    diff = load_diff("gemma-2-2b")  # the replication's crosscoder from its repo layout + both models
    tokens = token_source_for(diff.pair, seq_len=64).next_batch(4)  # the replication's pre-tokenised dataset
    metrics = reconstruction_metrics(diff.crosscoder, activation_batches(diff.pair, 256, batch_size=128, seq_len=64))
    splices = splice_metrics(diff.pair, diff.crosscoder, [tokens])
    topk = load_diff("gemma-2-2b", release="gemma-2-2b-l13-batchtopk")
    l1 = load_diff("gemma-2-2b", release="gemma-2-2b-l13-l1")
    return {"hook_point": diff.hook_point, "d_model": diff.crosscoder.cfg.d_model, "tokens_shape": list(tokens.shape),
            "bos_first": bool((tokens[:, 0] == diff.pair.tokenizer.bos_token_id).all()),
            "l0": metrics.l0, "splice_finite": bool(splices[["clean_loss", "spliced_loss"]].map(math.isfinite)
                                                      .all().all()),
            "l13_hook_points": [topk.hook_point, l1.hook_point], "l13_activations": [topk.crosscoder.cfg.activation,
                                                                                      l1.crosscoder.cfg.activation],
            "batchtopk_k": topk.crosscoder.cfg.k, "chat_template": "<start_of_turn>" in diff.pair.models[1].tokenizer
            .apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)}


def own_pair() -> dict:
    register_pair(**OWN_PAIR, settings={"seq_len": 64})
    pair = load_model_pair(OWN_PAIR["name"])
    source = token_source_for(pair, seq_len=64)
    rows = source.next_batch(4)
    texts = [pair.tokenizer.decode(row) for row in rows]
    buffer = make_buffer(pair, source, buffer_tokens=2048, model_batch_size=8)
    crosscoder = new_crosscoder(pair, buffer, scale_tokens=256, d_hidden=128)
    history = Trainer(crosscoder, buffer, TrainConfig(num_tokens=4096, batch_size=256, lr=1e-3, log_every=1)).train()
    diff = load_diff(crosscoder, pair)
    register_pair("rehearsal-llama-gemma-data", OWN_PAIR["base"], OWN_PAIR["chat"], hook_point=OWN_PAIR["hook_point"],
                  data={"kind": "hub", "tokenized": {"path": REPLICATION_DATASET, "column": "input_ids",
                                                     "tokenizer": "google/gemma-2-2b"}})
    try:
        token_source_for(load_model_pair("rehearsal-llama-gemma-data"), seq_len=64)
        refused = ""
    except DataTokenizerError as error:
        refused = str(error)
    return {"mixed": isinstance(source, MixedTokenSource), "chat_rows": ["<|start_header_id|>" in t for t in texts],
            "loss_fell": history[-1]["reconstruction"] < history[0]["reconstruction"], "steps": len(history),
            "hook_point": diff.hook_point, "gemma_data_refused": refused}


if __name__ == "__main__":
    torch.manual_seed(0)
    json.dump({"gemma": gemma(), "own": own_pair()}, open(sys.argv[1], "w"), indent=1)
