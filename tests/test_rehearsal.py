"""The Gemma-2-2B path and "your own pair", end to end against the offline Hub rehearsal
(``helpers.builders.rehearsal``): real repo ids, file names and formats; tiny trained weights. Runs in a subprocess
so that ``HF_HOME`` and ``HF_HUB_OFFLINE=1`` are in place before ``huggingface_hub`` is imported."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.builders.rehearsal import REPLICATION, TOY_L1
from helpers.crosscoder.releases import load_release

from .shared import built_once, shared_folder

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="session")  # session, not module: a worker may run other modules' tests in between
def measured(rehearsal_home: Path, tmp_path_factory, worker_id: str) -> dict:
    """What ``tests.rehearsal_worker`` measured, once for all workers."""
    def measure(out: Path) -> None:
        env = {**os.environ, "HF_HOME": str(rehearsal_home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "rehearsal-token",
               "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
        done = subprocess.run([sys.executable, "-m", "tests.rehearsal_worker", str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]

    return json.loads(built_once(shared_folder(tmp_path_factory, worker_id) / "rehearsal-measured.json",
                                 measure).read_text())


def test_hub_layout_is_the_real_one(rehearsal_home: Path):
    home = rehearsal_home
    snapshots = {p.relative_to(home / "hub").parts[0] for p in (home / "hub").glob("*/snapshots/*")}
    assert {"models--google--gemma-2-2b", "models--google--gemma-2-2b-it",
            "models--ckkissane--crosscoder-gemma-2-2b-model-diff",
            "datasets--ckkissane--pile-lmsys-mix-1m-tokenized-gemma-2"} <= snapshots
    replication = next((home / "hub").glob("models--ckkissane--*/snapshots/*/blocks.14.hook_resid_pre"))
    assert {p.name for p in replication.iterdir()} == {"cfg.json", "cc_weights.pt"}
    config = json.loads(next((home / "hub").glob("models--google--gemma-2-2b/snapshots/*/config.json")).read_text())
    assert config["architectures"] == ["Gemma2ForCausalLM"] and config["num_hidden_layers"] == 26
    assert config["final_logit_softcapping"] == 30.0 and config["query_pre_attn_scalar"] == 256
    assert config["tie_word_embeddings"] and config["sliding_window"] == 4096
    assert (home / "registry.yaml").is_file(), "the stand-ins' records and the own pair, for CROSSCODER_REGISTRY"


def test_gemma_path_runs_offline_end_to_end(measured):
    gemma = measured["gemma"]
    assert gemma["hook_point"] == "blocks.14.hook_resid_pre" and gemma["d_model"] == 128
    assert gemma["tokens_shape"] == [4, 64] and gemma["bos_first"], "the replication's pre-tokenised rows"
    assert gemma["l0"] > 0 and gemma["splice_finite"]
    assert gemma["l13_hook_points"] == ["blocks.13.hook_resid_post"] * 2
    assert gemma["l13_activations"] == ["batchtopk", "relu"]
    assert gemma["batchtopk_k"] == measured["stand_ins"]["toy_batchtopk_k"]
    assert gemma["chat_template"], "the IT model's tokenizer carries Gemma's chat template"


def test_gemma_stand_ins_compute_what_the_toy_pair_computes(measured):
    """The stand-ins carry the toy pair in Gemma-2-2B's shape: the replication's site reads the toy's last block
    (scaled so that the published scale factors normalise it), the next-token distributions are the toy's (up to
    the mass on Gemma's extra special tokens), and every Gemma release encodes as the toy release it carries."""
    stand_ins = measured["stand_ins"]
    assert stand_ins["activation_gap"] < 1e-5
    replication_scales = REPLICATION.scale_factors
    toy_scales = load_release(TOY_L1).scale_factors.tolist()
    expected_scales = [toy / published for toy, published in zip(toy_scales, replication_scales)]
    assert stand_ins["residual_scales"] == pytest.approx(expected_scales, rel=1e-4)
    assert stand_ins["mean_logprob_gap"] < 0.01
    assert max(stand_ins["latent_gap"].values()) < 1e-5, stand_ins["latent_gap"]


def test_own_pair_trains_on_its_own_text_and_chat_data(measured):
    own = measured["own"]
    assert own["mixed"] and own["chat_rows"] == [False, True, False, True], "text and chat rows, 50/50"
    assert own["steps"] == 16 and own["loss_fell"] and own["hook_point"] == "blocks.2.hook_resid_post"
    assert "different tokenizers" in own["gemma_data_refused"], "Gemma token ids never feed a Llama pair"


def test_the_own_pair_is_trained_and_its_instruct_model_learnt_its_chat_template():
    """The shipped own pair (``helpers.builders.rehearsal_llama``): the base model predicts held-out source far better
    than uniform, and the instruct model predicts held-out conversations in its chat template better than the
    base model does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.builders.rehearsal_llama import conversations, llama_path
    from helpers.builders.toy_pair import _sequences, _source_rows, _tokenize_stream, heldout_loss

    tokenizer = AutoTokenizer.from_pretrained(llama_path() / "chat")
    base, chat = (AutoModelForCausalLM.from_pretrained(llama_path() / role).eval() for role in ("base", "chat"))
    source = _source_rows(tokenizer, "heldout", 128)[:64]
    assert heldout_loss(base, source) < 0.6 * math.log(len(tokenizer))
    rendered = [tokenizer.apply_chat_template(messages, tokenize=False) for messages in conversations("heldout")]
    dialogues = _sequences(_tokenize_stream(tokenizer, rendered[:400]), 128, tokenizer.bos_token_id)[:64]
    assert heldout_loss(chat, dialogues) < 0.8 * heldout_loss(base, dialogues)
