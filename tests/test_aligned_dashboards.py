"""Dashboards of a crosscoder on a pair with separate tokenizers (notebook 10's toy-vs-llama and its release)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import (
    aligned_positions,
    evaluation_questions,
    gather_aligned_dashboards,
    gather_dashboards,
    load_model_pair,
    load_release,
    token_end_offsets,
)
from helpers.activations.sites import run_to_site
from helpers.analysis.dashboards import render_html
from helpers.toy.corpus import paired_texts

LATENTS = [129, 7, 300]


@pytest.fixture(scope="module")
def pair_and_crosscoder():
    pair = load_model_pair("toy-vs-llama")
    return pair, load_release(pair.profile.release)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    questions = evaluation_questions("heldout", n_other=24)
    return [q.prompt for q in questions] + [text[:600] for text in paired_texts("heldout")[:6]]


def one_text_at_a_time(pair, crosscoder, texts: list[str]) -> torch.Tensor:
    """Each aligned pair's latent activations ``[n_pairs, d_hidden]``: every text run alone (no padding), each model
    on its own tokens with its BOS, gathered at ``aligned_positions``."""
    rows = []
    for text in texts:
        per_model, ends = [], []
        for model, tokenizer in zip(pair.models, pair.tokenizers):
            ids, token_ends = token_end_offsets(tokenizer, text)
            acts = run_to_site(model, torch.tensor([[tokenizer.bos_token_id, *ids]]), pair.hook_point)[0, 1:]
            per_model.append(acts.float())
            ends.append(token_ends)
        in_a, in_b = aligned_positions(*ends)
        rows.append(torch.stack([per_model[0][in_a], per_model[1][in_b]], dim=1))
    with torch.no_grad():
        return crosscoder.encode(torch.cat(rows))


def test_aligned_dashboards_equal_a_text_by_text_computation(pair_and_crosscoder, texts):
    pair, crosscoder = pair_and_crosscoder
    dashboards = gather_aligned_dashboards(pair, crosscoder, texts, LATENTS, n_top=4, texts_per_batch=5,
                                           progress=False)
    expected = one_text_at_a_time(pair, crosscoder, texts)[:, LATENTS]
    for dashboard, column in zip(dashboards, expected.T):
        assert dashboard.max_activation == pytest.approx(column.max().item(), rel=1e-4, abs=1e-5)
        assert dashboard.density == pytest.approx((column > 0).float().mean().item())
        top = [example.activations[example.focus] for example in dashboard.top_examples]
        assert top == pytest.approx(column.topk(len(top)).values.tolist(), rel=1e-3, abs=1e-4)
        assert dashboard.logit_effects[0]["name"] == pair.names[0]


def test_each_example_shows_both_models_ending_at_the_same_character(pair_and_crosscoder, texts):
    pair, crosscoder = pair_and_crosscoder
    dashboard = gather_aligned_dashboards(pair, crosscoder, texts, [129], n_top=6, progress=False)[0]
    assert dashboard.max_activation > 0
    examples = dashboard.top_examples + [e for _, group in dashboard.band_examples for e in group]
    for example in examples:
        assert example.other["model"] == pair.names[1]
        mine = "".join(example.tokens[:example.focus + 1]).replace("↵", "\n")
        theirs = "".join(example.other["tokens"][:example.other["focus"] + 1]).replace("↵", "\n")
        shorter = min(len(mine), len(theirs))
        assert mine[-shorter:] == theirs[-shorter:], (mine, theirs)
        assert "<pad>" not in example.tokens and len(example.tokens) == len(example.activations)
    page = render_html([dashboard])
    shown = json.loads(page.split('id="dashboard-data">')[1].split("</script>")[0])
    assert shown["latents"][0]["top"][0]["other"]["model"] == pair.names[1]


def test_aligned_dashboards_refuse_bad_input(pair_and_crosscoder, texts, toy_pair):
    pair, crosscoder = pair_and_crosscoder
    with pytest.raises(ValueError, match="separate tokenizers.*gather_aligned_dashboards"):
        gather_dashboards(pair, crosscoder, [torch.zeros(1, 4, dtype=torch.long)], [1])
    with pytest.raises(ValueError, match="shares one tokenizer: use gather_dashboards"):
        gather_aligned_dashboards(toy_pair, crosscoder, texts, [1])
    with pytest.raises(TypeError, match="texts must be a list, got str"):
        gather_aligned_dashboards(pair, crosscoder, "one string", [1])
    with pytest.raises(ValueError, match="texts must be non-empty strings; entry 1 is ''"):
        gather_aligned_dashboards(pair, crosscoder, ["fine", ""], [1])
    with pytest.raises(ValueError, match="texts"):
        gather_aligned_dashboards(pair, crosscoder, [], [1])
    with pytest.raises(ValueError, match="latent ids must lie in"):
        gather_aligned_dashboards(pair, crosscoder, texts, [crosscoder.cfg.d_hidden])
    with pytest.raises(ValueError, match="texts_per_batch"):
        gather_aligned_dashboards(pair, crosscoder, texts, [1], texts_per_batch=0)
    with pytest.raises(ValueError, match="max_chars"):
        gather_aligned_dashboards(pair, crosscoder, texts, [1], max_chars=-3)
    with pytest.raises(TypeError, match="pair"):
        gather_aligned_dashboards("toy-vs-llama", crosscoder, texts, [1])
