"""Launched by ``test_rehearsal`` with ``HF_HOME`` set to a rehearsal (``helpers.builders.rehearsal``) and
``HF_HUB_OFFLINE=1``: ``python -m tests.rehearsal_worker OUT.json``. Walks the Gemma-2-2B path and the own-pair
path through the public API, exactly as a user on the real Hub would, and writes what it measured."""

from __future__ import annotations

import json
import math
import sys

import torch

from helpers import load_diff, load_model_pair, make_buffer, new_crosscoder, register_pair, token_source_for
from helpers.activations.data import MixedTokenSource, ToyTokenSource
from helpers.analysis.evals import reconstruction_metrics, splice_metrics
from helpers.builders.rehearsal import (
    OWN_PAIR,
    REPLICATION,
    REPLICATION_DATASET,
    SOF_BATCHTOPK,
    SOF_L1,
    TOY_BATCHTOPK,
    TOY_L1,
)
from helpers.builders.rehearsal_gemma import token_map
from helpers.crosscoder.releases import load_release
from helpers.files import write_atomically
from helpers.training.recipes import DataTokenizerError, activation_batches
from helpers.training.trainer import TrainConfig, Trainer


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


def stand_ins() -> dict:
    """How far the Gemma stand-ins are from the toy pair they carry: activations at the replication's site (per
    unit of the residual scale), next-token log-probabilities, and the latents of every Gemma release against
    those of the toy release it stands in with."""
    toy, gemma = load_model_pair("toy"), load_model_pair("gemma-2-2b")
    mapping = token_map(len(toy.tokenizer))
    rows = ToyTokenSource(toy.tokenizer, seq_len=64, seed=1).next_batch(4)
    site = gemma.hook_point
    toy_acts, gemma_acts, logprob_gap = [], [], 0.0
    for toy_model, gemma_model in zip(toy.models, gemma.models):
        _, toy_cache = toy_model.run_with_cache(rows, names_filter=lambda name: name == toy.hook_point)
        logits, gemma_cache = gemma_model.run_with_cache(mapping[rows], names_filter=lambda name: name == site)
        toy_acts.append(toy_cache[toy.hook_point].reshape(-1, toy.models[0].cfg.d_model))
        gemma_acts.append(gemma_cache[site].reshape(-1, toy.models[0].cfg.d_model))
        gap = toy_model(rows).log_softmax(-1) - logits.log_softmax(-1)[..., mapping]
        logprob_gap = max(logprob_gap, gap.abs().mean().item())
    x_toy, x_gemma = torch.stack(toy_acts, 1), torch.stack(gemma_acts, 1)  # [tokens, 2, d_model]
    scales = (x_gemma.norm(dim=-1) / x_toy.norm(dim=-1)).mean(0)  # [2]
    latent_gap = {}
    for gemma_release, toy_release in ((REPLICATION.name, TOY_L1), (SOF_L1.name, TOY_L1),
                                       (SOF_BATCHTOPK.name, TOY_BATCHTOPK)):
        expected = load_release(toy_release).encode(x_toy)
        latent_gap[gemma_release] = ((load_release(gemma_release).encode(x_gemma) - expected).abs().max()
                                     / expected.abs().max()).item()
    return {"activation_gap": ((x_gemma / scales[None, :, None] - x_toy).abs().max() / x_toy.abs().max()).item(),
            "residual_scales": scales.tolist(), "mean_logprob_gap": logprob_gap, "latent_gap": latent_gap,
            "toy_batchtopk_k": load_release(TOY_BATCHTOPK).cfg.k}


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
    measured = {"gemma": gemma(), "stand_ins": stand_ins(), "own": own_pair()}
    write_atomically(sys.argv[1], lambda tmp: tmp.write_text(json.dumps(measured, indent=1)))  # whole or absent
