"""The Gemma-2-2B path and "your own pair", end to end against the offline Hub rehearsal (``helpers.rehearsal``):
real repo ids, file names and formats; tiny random weights. Runs in a subprocess so that ``HF_HOME`` and
``HF_HUB_OFFLINE=1`` are in place before ``huggingface_hub`` is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.rehearsal import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    home = build(tmp_path_factory.mktemp("hf-home"))
    out = home / "measured.json"
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "rehearsal-token",
           "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.rehearsal_worker", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_hub_layout_is_the_real_one(tmp_path):
    home = build(tmp_path)
    snapshots = {p.relative_to(home / "hub").parts[0] for p in (home / "hub").glob("*/snapshots/*")}
    assert {"models--google--gemma-2-2b", "models--google--gemma-2-2b-it",
            "models--ckkissane--crosscoder-gemma-2-2b-model-diff",
            "datasets--ckkissane--pile-lmsys-mix-1m-tokenized-gemma-2"} <= snapshots
    replication = next((home / "hub").glob("models--ckkissane--*/snapshots/*/blocks.14.hook_resid_pre"))
    assert {p.name for p in replication.iterdir()} == {"cfg.json", "cc_weights.pt"}
    config = json.loads(next((home / "hub").glob("models--google--gemma-2-2b/snapshots/*/config.json")).read_text())
    assert config["architectures"] == ["Gemma2ForCausalLM"] and config["num_hidden_layers"] == 26
    assert config["final_logit_softcapping"] == 30.0 and config["query_pre_attn_scalar"] == 8
    assert config["tie_word_embeddings"] and config["sliding_window"] == 4096


def test_gemma_path_runs_offline_end_to_end(measured):
    gemma = measured["gemma"]
    assert gemma["hook_point"] == "blocks.14.hook_resid_pre" and gemma["d_model"] == 64
    assert gemma["tokens_shape"] == [4, 64] and gemma["bos_first"], "the replication's pre-tokenised rows"
    assert gemma["l0"] > 0 and gemma["splice_finite"]
    assert gemma["l13_hook_points"] == ["blocks.13.hook_resid_post"] * 2
    assert gemma["l13_activations"] == ["batchtopk", "relu"] and gemma["batchtopk_k"] == 100
    assert gemma["chat_template"], "the IT model's tokenizer carries Gemma's chat template"


def test_own_pair_trains_on_its_own_text_and_chat_data(measured):
    own = measured["own"]
    assert own["mixed"] and own["chat_rows"] == [False, True, False, True], "text and chat rows, 50/50"
    assert own["steps"] == 16 and own["loss_fell"] and own["hook_point"] == "blocks.2.hook_resid_post"
    assert "different tokenizers" in own["gemma_data_refused"], "Gemma token ids never feed a Llama pair"
