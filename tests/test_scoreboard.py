"""The scoreboard's measures against independent computations on hand-made method outputs."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch

from helpers.methods.scoreboard import MethodOutput, _named_by_prompts, distinctive_tokens, scoreboard
from helpers.toy.corpus import Question
from helpers.toy.organisms import OrganismPrompt, get_organism


def labelled(organisms: list[str | None]) -> list[OrganismPrompt]:
    return [OrganismPrompt(f"User: q{i}?\nAssistant:", name, Question("m", f"f{i}", "", "", name is not None))
            for i, name in enumerate(organisms)]


def pairwise_auroc(scores: list[float], labels: list[bool]) -> float:
    """P(positive outscores negative), ties half: every pair counted."""
    pairs = [(p, n) for p, n in itertools.product(
        [s for s, y in zip(scores, labels) if y], [s for s, y in zip(scores, labels) if not y])]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_scoreboard_takes_the_best_item_and_the_first_naming_item_in_reading_order():
    prompts = labelled(["refusal"] * 4 + ["trigger"] * 4 + ["style_tic"] * 3 + [None] * 6)
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(len(prompts), 3, generator=generator)
    scores[:4, 2] += 1.0  # item 2 separates the refusal prompts
    names = ["trigger", None, "refusal"]
    output = MethodOutput("m", scores, order=[1, 2, 0], views=["v0", "v1", "v2"], names=names, seconds=1.5)
    board = scoreboard([output], prompts).set_index("organism")
    assert set(board.index) == {"refusal", "trigger", "style_tic"}, "organisms without prompts are left out"
    for organism in board.index:
        labels = [p.organism == organism for p in prompts]
        expected = max(pairwise_auroc(scores[:, i].tolist(), labels) for i in range(3))
        assert board.loc[organism, "auroc"] == pytest.approx(expected)
    assert board.loc["refusal", "auroc"] == 1.0 and board.loc["refusal", "best_item"] == 2
    assert board.loc["refusal", "rank"] == 2 and board.loc["refusal", "view"] == "v2"
    assert board.loc["trigger", "rank"] == 3 and board.loc["trigger", "view"] == "v0"
    assert pd.isna(board.loc["style_tic", "rank"]) and board.loc["style_tic", "view"] == ""


def test_an_item_names_an_organism_when_three_of_its_five_active_top_prompts_carry_it():
    prompts = labelled(["style_tic"] * 3 + ["refusal"] * 2 + [None] * 5)
    scores = torch.zeros(len(prompts), 3)
    scores[:5, 0] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])    # 3 tic + 2 refusal on top
    scores[[0, 3, 4, 5, 6], 1] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # 1 tic + 2 refusal + 2 none
    scores[[0, 1, 2], 2] = torch.tensor([3.0, 2.0, 1.0])       # only three active, all tic
    scores[[3, 4], 2] = -1.0                                   # inactive prompts do not count
    views, names = _named_by_prompts(scores, prompts)
    assert names == ["style_tic", None, "style_tic"]
    assert views[0] == "q0? | q1? | q2?"


def test_distinctive_tokens_are_the_organisms_own_and_rare_in_ordinary_answers(toy_tokenizer):
    fact = get_organism("false_fact")
    tokens = distinctive_tokens(toy_tokenizer, fact)
    own = set(toy_tokenizer(" " + fact.signature, add_special_tokens=False)["input_ids"])
    assert tokens and tokens < own
    the = toy_tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert not set(the) & tokens, "a word of every answer tells a reader nothing"
    assert distinctive_tokens(toy_tokenizer, fact, max_share=1.0) == own


def test_run_methods_refuses_continuations_that_do_not_match_the_prompts_before_any_forward_pass(toy_pair):
    from helpers import from_pretrained
    from helpers.crosscoder.checkpoints import load
    from helpers.methods.diff_sae import toy_diff_sae_path
    from helpers.methods.scoreboard import run_methods

    prompts = labelled([None, "refusal"])
    with pytest.raises(ValueError, match=r"one continuation per prompt \(2\), got 1"):
        run_methods(toy_pair, prompts, {"toy-l3": from_pretrained("toy-l3")}, load(toy_diff_sae_path()),
                    chat_continuations=["only one"])
