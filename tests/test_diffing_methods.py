"""Diffing methods beyond the crosscoder: per-token KL, the Activation Difference Lens, the diff-SAE.
Checked against independent computations, and on the toy pair's planted refusal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.activations.buffer import HarvestingSource, ShufflingBuffer
from helpers.activations.sites import harvest
from helpers.analysis.behaviour import evaluation_questions
from helpers.analysis.detection import auroc
from helpers.analysis.steering import vector_logits_fn
from helpers.methods.diff_sae import DifferenceSource, new_diff_sae
from helpers.methods.difference_lens import activation_difference_lens, lens_probabilities
from helpers.methods.token_divergence import prompt_kl, token_kl
from helpers.training.recipes import token_source_for
from helpers.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def tokens(toy_pair):
    return token_source_for(toy_pair, seq_len=24, seed=5).next_batch(6)


def test_token_kl_is_kl_of_chat_from_base(toy_pair, tokens):
    result = token_kl(toy_pair, [tokens[:3], tokens[3:]], progress=False)
    with torch.no_grad():
        base, chat = (F.log_softmax(m(tokens).double(), -1) for m in toy_pair.models)
    expected = F.kl_div(base, chat, log_target=True, reduction="none").sum(-1)  # KL(chat || base)
    assert result.kl.shape == tokens.shape and torch.allclose(result.kl.double(), expected, atol=1e-4)
    top = result.top(toy_pair.tokenizer, n=3)
    assert list(top["kl"]) == sorted(top["kl"], reverse=True) and top["kl"].iloc[0] == result.kl[:, :-1].max()


def test_prompt_kl_finds_the_planted_refusal(toy_pair):
    questions = evaluation_questions("heldout", n_other=60)
    kl = prompt_kl(toy_pair, [q.prompt for q in questions])
    assert auroc(kl, [q.planted for q in questions]).item() > 0.9  # measured 0.974 with 200 others


def test_difference_lens_is_the_mean_activation_difference(toy_pair, tokens):
    lens = activation_difference_lens(toy_pair, [tokens[:4], tokens[4:]], n_positions=5,
                                      hook_point=toy_pair.hook_point, progress=False)
    acts = harvest(toy_pair.models, tokens[:, :5], toy_pair.hook_point)
    assert torch.allclose(lens.mean_difference, (acts[:, :, 1] - acts[:, :, 0]).mean(0), atol=1e-5)
    assert lens.n_sequences == 6 and lens.logit_lens(toy_pair, 1, k=5).shape == (5, 4)
    with pytest.raises(ValueError, match="shorter than n_positions"):
        activation_difference_lens(toy_pair, [tokens[:, :3]], n_positions=5, progress=False)


def test_logit_lens_of_the_final_residual_is_the_model_before_soft_capping(toy_pair, tokens):
    chat = toy_pair.models[1]
    last = f"blocks.{chat.cfg.n_layers - 1}.hook_resid_post"
    residual = harvest([chat], tokens[:1], last)[0, 7, 0]
    with torch.no_grad():
        logits = chat(tokens[:1])[0, 7].double()
    cap = 30.0  # the toy pair's final_logit_softcapping; the lens, like diffing-toolkit's, skips it
    uncapped = cap * torch.atanh((logits / cap).clamp(-1 + 1e-12, 1 - 1e-12))
    assert torch.allclose(lens_probabilities(chat, residual)[0].double(), uncapped.softmax(-1), atol=1e-4)


def test_steering_with_a_vector_adds_it_at_the_site(toy_pair, tokens):
    with torch.no_grad():
        plain = toy_pair.models[0](tokens)
    zero = vector_logits_fn(toy_pair, torch.ones(toy_pair.d_model), 0.0, toy_pair.hook_point)(tokens)
    moved = vector_logits_fn(toy_pair, torch.ones(toy_pair.d_model), 5.0, toy_pair.hook_point)(tokens)
    assert torch.allclose(zero, plain, atol=1e-5) and not torch.allclose(moved, plain, atol=1e-2)


def test_diff_sae_learns_the_activation_differences(toy_pair):
    paired = HarvestingSource(toy_pair.models, token_source_for(toy_pair, 64, seed=2), toy_pair.hook_point)
    differences = DifferenceSource(paired)
    state = differences.state_dict()
    first = differences.next_activations(50)
    differences.load_state_dict(state)
    acts = paired.next_activations(50)
    assert torch.equal(first, acts[:, 1:2] - acts[:, 0:1]) and first.shape == (50, 1, toy_pair.d_model)
    differences.load_state_dict(state)
    buffer = ShufflingBuffer(differences, buffer_tokens=4096, seed=0)
    sae = new_diff_sae(list(toy_pair.names), toy_pair.hook_point, differences, d_hidden=256, k=16, scale_tokens=1024)
    history = Trainer(sae, buffer, TrainConfig(num_tokens=8192, batch_size=512, lr=3e-3, l1_coeff=0.0,
                                               log_every=1)).train()
    assert sae.cfg.n_models == 1 and sae.cfg.activation == "batchtopk"
    assert sae.cfg.model_names == [f"{toy_pair.names[1]} - {toy_pair.names[0]}"]
    assert "explained_variance_input" in history[-1]
    assert history[-1]["reconstruction"] < 0.6 * history[0]["reconstruction"]  # measured: 158 -> 79 in 16 steps
