"""Greedy generation with a KV cache (``EditedRun.begin`` / ``extend``) against today's full re-run at every token,
for the plain models and every hooked variant; the spliced run against ``SplicedRunner``'s spliced forward."""

from __future__ import annotations

import pytest
import torch

from helpers import from_pretrained
from helpers.activations.runs import EditedRun, RunState
from helpers.activations.sites import SplicedRunner
from helpers.analysis.behaviour import greedy_continuations
from helpers.analysis.interventions import ablated_logits_fn, spliced_logits_fn
from helpers.analysis.latents import encode_tokens
from helpers.analysis.steering import steered_logits_fn
from helpers.methods.difference_lens import DifferenceLens
from helpers.toy.corpus import questions


@pytest.fixture(scope="module")
def release():
    return from_pretrained("toy-l3")


@pytest.fixture(scope="module")
def prompts():
    pool = questions("heldout")
    planted = [q.prompt for q in pool if q.planted][:4]
    return planted + [q.prompt for q in pool if not q.planted][:4]


def _variants(pair, release, planted_latent: int) -> dict[str, EditedRun]:
    lens = DifferenceLens(torch.randn(2, pair.d_model, generator=torch.Generator().manual_seed(0)), pair.hook_point, 1)
    return {
        "base": EditedRun(pair.models, 0),
        "chat": EditedRun(pair.models, 1),
        "steered, every position": steered_logits_fn(pair, release, planted_latent, 4.0, model_index=0),
        "steered, where active": steered_logits_fn(pair, release, planted_latent, 8.0, model_index=0, where="active"),
        "ablated, contribution": ablated_logits_fn(pair, release, [planted_latent], 1, "contribution"),
        "ablated, direction": ablated_logits_fn(pair, release, [planted_latent], 1, "direction"),
        "spliced, base": spliced_logits_fn(pair, release, 0),
        "spliced, chat": spliced_logits_fn(pair, release, 1),
        "difference-lens steering": lens.steering_fn(pair, 1, 3.0),
    }


def test_cached_generation_gives_the_tokens_of_the_full_rerun(toy_pair, release, prompts):
    codes = encode_tokens(toy_pair, release, toy_pair.tokenizer([prompts[0]], return_tensors="pt")["input_ids"])
    planted_latent = int(codes[0, -1].argmax())
    differs = set()
    reference = None
    for name, run in _variants(toy_pair, release, planted_latent).items():
        full = greedy_continuations(run, toy_pair.tokenizer, prompts, 12, use_cache=False)
        cached = greedy_continuations(run, toy_pair.tokenizer, prompts, 12)
        assert cached == full, name
        reference = reference or full
        if full != reference:
            differs.add(name)
    assert len(differs) >= 5, f"most variants change what the model says; only {sorted(differs)} did"


def test_extend_matches_the_full_forward_position_by_position(toy_pair, release):
    tokens = toy_pair.tokenizer(["User: What does os.path.join do?\nAssistant: It"], return_tensors="pt")["input_ids"]
    run = ablated_logits_fn(toy_pair, release, [0, 1, 2], 1, "direction")
    full = run(tokens)
    logits, state = run.begin(tokens[:, :5])
    pieces = [logits]
    for position in range(5, tokens.shape[1]):
        logits, state = run.extend(tokens[:, position:position + 1], state)
        pieces.append(logits)
    assert state.length == tokens.shape[1]
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-4)


def test_spliced_run_equals_the_spliced_forward_of_splice_metrics(toy_pair, release):
    tokens = toy_pair.tokenizer(["User: Tell me about lists.\nAssistant:"] * 2, return_tensors="pt")["input_ids"]
    runner = SplicedRunner(toy_pair.models, toy_pair.hook_point, tokens)
    body = runner.activations[:, 1:]
    with torch.no_grad():
        reconstruction = release(body.flatten(0, 1)).view_as(body)
    for m in range(2):
        replaced = torch.cat([runner.activations[:, :1, m], reconstruction[:, :, m]], dim=1)
        assert torch.allclose(spliced_logits_fn(toy_pair, release, m)(tokens), runner.run(m, replaced), atol=1e-4)


def test_bad_runs_are_refused(toy_pair):
    with pytest.raises(ValueError, match="target"):
        EditedRun(toy_pair.models, 2)
    with pytest.raises(ValueError, match="non-empty list"):
        EditedRun([], 0)
    with pytest.raises(TypeError, match="edit must be a function"):
        EditedRun(toy_pair.models, 0, toy_pair.hook_point, edit="add")
    with pytest.raises(ValueError, match="needs the hook_point"):
        EditedRun(toy_pair.models, 0, edit=lambda a, acts, t, s: a)
    with pytest.raises(ValueError, match="does not exist"):
        EditedRun(toy_pair.models, 0, "blocks.99.hook_resid_pre", lambda a, acts, t, s: a)
    run = EditedRun(toy_pair.models, 0)
    with pytest.raises(TypeError, match="RunState"):
        run.extend(torch.tensor([[5]]), None)
    context = toy_pair.base.cfg.n_ctx
    with pytest.raises(ValueError, match="exceed the model's context"):
        run.extend(torch.tensor([[5]]), RunState([None, None], context))
    with pytest.raises(TypeError, match="use_cache"):
        greedy_continuations(run, toy_pair.tokenizer, ["User: a?\nAssistant:"], 2, use_cache="yes")
