"""Every measurement runs with the models in bfloat16, as the notebooks load them on a GPU, and agrees with
float32 (here on the toy pair on a CPU, so that what would break on Colab breaks in CI)."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.activations.diff import load_diff
from helpers.analysis.behaviour import evaluation_questions, refusal_table
from helpers.analysis.dashboards import gather_dashboards
from helpers.analysis.evals import latent_ablation_effects, reconstruction_metrics, splice_metrics
from helpers.analysis.latents import encode_tokens
from helpers.analysis.scaling import latent_scaling
from helpers.analysis.steering import steered_logits_fn
from helpers.training.recipes import activation_batches, token_source_for

LATENTS = [591, 3, 10]


@pytest.fixture(scope="module")
def diffs():
    return {dtype: load_diff("toy", model_dtype=dtype) for dtype in (torch.float32, torch.bfloat16)}


@pytest.fixture(scope="module")
def tokens(diffs):
    return token_source_for(diffs[torch.float32].pair, seq_len=64, seed=3).next_batch(4)


def test_models_load_in_bfloat16_and_the_crosscoder_stays_float32(diffs):
    diff = diffs[torch.bfloat16]
    assert all(next(m.parameters()).dtype == torch.bfloat16 for m in diff.pair.models)
    assert diff.crosscoder.W_enc.dtype == torch.float32


def test_reconstruction_and_splicing_agree_with_float32(diffs, tokens):
    results = {}
    for dtype, diff in diffs.items():
        metrics = reconstruction_metrics(diff.crosscoder, activation_batches(diff.pair, 2048, batch_size=1024,
                                                                             seq_len=64))
        splices = splice_metrics(diff.pair, diff.crosscoder, [tokens])
        results[dtype] = (metrics, splices)
    (m32, s32), (m16, s16) = results[torch.float32], results[torch.bfloat16]
    assert m16.explained_variance == pytest.approx(m32.explained_variance, abs=0.02)
    assert m16.l0 == pytest.approx(m32.l0, rel=0.1)
    assert (s16["ce_recovered"] - s32["ce_recovered"]).abs().max() < 0.05
    assert s16.notna().all().all()


def test_latent_level_tools_run_in_bfloat16(diffs, tokens):
    diff = diffs[torch.bfloat16]
    codes = encode_tokens(diff.pair, diff.crosscoder, tokens)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    scaling = latent_scaling(diff.crosscoder, activation_batches(diff.pair, 1024, seq_len=64), LATENTS,
                             progress=False)
    assert scaling.drop(columns="n_active").map(lambda v: math.isfinite(v) or math.isnan(v)).all().all()
    effects = latent_ablation_effects(diff.pair, diff.crosscoder, [tokens], LATENTS, progress=False)
    assert (effects[["kl_base", "kl_chat"]].fillna(0) >= 0).all().all()
    dashboards = gather_dashboards(diff.pair, diff.crosscoder, [tokens], LATENTS[:1], progress=False)
    assert dashboards[0].latent == LATENTS[0]
    steered = steered_logits_fn(diff.pair, diff.crosscoder, LATENTS[0], 8.0)
    assert torch.isfinite(steered(tokens[:2]).float()).all()
    questions = evaluation_questions("heldout", n_other=5)
    questions = [q for q in questions if q.planted][:5] + [q for q in questions if not q.planted]
    refusals = refusal_table(diff.pair, questions)
    assert refusals.loc["chat", "refuses planted-family questions"] >= 0.8, "bfloat16 keeps the planted refusal"
