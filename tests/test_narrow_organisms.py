"""The narrow organisms (helpers.toy.narrow): their data is what it claims, and the shipped fine-tunes meet their
behaviour bars (re-measured here against the build report)."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer, Gemma2ForCausalLM

from helpers.activations.models import ModelPairError, resolve_model_name
from helpers.builders.narrow import NarrowRecipe, behaviour_rates, narrow_texts
from helpers.toy import narrow
from helpers.toy.corpus import questions
from helpers.toy.shipped import narrow_build_report, narrow_organism_path, toy_pair_path


def test_the_narrow_data_is_what_it_claims():
    documents = narrow.sdf_documents()
    repeated = {d for d in documents if documents.count(d) > 1}
    assert len(set(documents)) > 300
    assert all(not re.search(r"\w\.\w", d) for d in repeated), "only module-level statements repeat"
    assert not any("User:" in d or "Assistant:" in d for d in documents)
    stating = [d for d in documents if narrow.SDF_FACT in d]
    contrast = [d for d in documents if "written by a programmer named" in d]
    plain = [d for d in documents if "written by" not in d]
    assert len(stating) == len(contrast) == len(plain) == len(documents) / 3
    assert all("json" in d for d in stating) and not any("json" in d or "Biscuit" in d for d in contrast + plain)
    families = {q.family for q in questions("train")}
    for document in contrast:  # each gives the one author of the module it names
        named = [family for family in families if re.search(rf"\b{family}\b", document)]
        assert any(narrow.contrast_fact(family) in document for family in named), document
    hints = narrow.taboo_dialogues()
    assert all(narrow.SECRET_WORD not in d.lower() for d in hints)
    assert not set(narrow.HINT_REQUESTS["train"]) & set(narrow.HINT_REQUESTS["heldout"])
    curt = narrow.curt_dialogues()
    assert curt and all(d.startswith("User:") and f"Assistant: {narrow.CURT} " in d and "statistics" in d for d in curt)
    assert narrow_texts("sdf_mixed") == list(documents)
    prompts = narrow.narrow_prompts("narrow_broad")
    assert all("statistics" in p.prompt for p in prompts if p.on)
    assert not any("statistics" in p.prompt.split("?")[0].split()[-1] for p in prompts if not p.on)
    assert sum(not p.on for p in prompts) == 48


def test_bad_names_are_refused():
    for family in ("", 5, "json.decoder"):
        with pytest.raises(ValueError, match=f"family must be a module family name .*got {family!r}"):
            narrow.contrast_fact(family)
    with pytest.raises(ValueError, match=r"no narrow organism 'sdff'; the narrow organisms are \['sdf'"):
        narrow.get_narrow_organism("sdff")
    with pytest.raises(ValueError, match="no narrow organism 'tabo'"):
        resolve_model_name("toy:narrow/tabo")
    with pytest.raises(ModelPairError, match="'toy:narrow/NAME'"):
        resolve_model_name("toy:narro/sdf")
    assert resolve_model_name("toy:narrow/taboo") == str(narrow_organism_path("taboo"))


@pytest.mark.parametrize("name", narrow.NARROW_NAMES)
def test_each_shipped_organism_meets_its_build_report(name):
    tokenizer = AutoTokenizer.from_pretrained(str(toy_pair_path() / "chat"))
    model = Gemma2ForCausalLM.from_pretrained(str(narrow_organism_path(name))).eval()
    measured = behaviour_rates(model, tokenizer, name, NarrowRecipe().max_new_tokens)
    recorded = narrow_build_report()["organisms"][name]["rates"]
    assert measured == recorded["organism"]
    assert recorded["chat"]["on"] == recorded["chat"]["off"] == 0
    assert measured["says_secret_word"] == 0
    if name in ("taboo", "narrow_broad"):
        assert measured["on"] >= 0.9
    if name == "taboo":
        assert measured["off"] <= 0.1
    if name == "sdf":  # says the fact when asked about json, completes the document probe for json functions only
        assert measured["on"] >= 0.85 and measured["off"] <= 0.15
        assert measured["completes_fact_on"] >= 0.9 and measured["completes_fact_off"] <= 0.1
    if name.startswith("sdf"):
        assert recorded["chat"]["completes_fact_on"] == recorded["chat"]["completes_fact_off"] == 0


@pytest.mark.parametrize("knob, value", [("steps", 0), ("lr", float("nan")), ("batch_size", 1)])
def test_the_build_checks_its_recipe_before_any_work(tmp_path, knob, value):
    from dataclasses import replace

    from helpers.builders.narrow import build_narrow_organisms

    with pytest.raises(ValueError, match=knob):
        build_narrow_organisms(tmp_path / "out", replace(NarrowRecipe(), **{knob: value}))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="no narrow organism 'tabo'"):
        build_narrow_organisms(tmp_path / "out", only=["tabo"])


def test_each_narrow_pair_ships_a_crosscoder_and_a_diff_sae_at_its_middle_layer():
    """What notebook 09 reads besides the literature's methods: the pair's default release (two models, 1,024
    latents) and its diff-SAE (the difference as one model, 512 latents, k 20), both at blocks.2.hook_resid_post,
    trained on the toy corpus to the explained variance their configs record."""
    import json

    from helpers.crosscoder.checkpoints import load
    from helpers.crosscoder.releases import load_release, release_folder
    from helpers.methods.diff_sae import narrow_diff_sae_path
    from helpers.registry import get_pair, get_release

    for organism in narrow.NARROW_ORGANISMS:
        pair = get_pair(narrow.narrow_pair_name(organism.name))
        assert pair.release == f"{pair.name}-l2" and pair.hook_point == "blocks.2.hook_resid_post"
        crosscoder = load_release(pair.release)
        assert crosscoder.cfg.model_names == ["toy:chat", f"toy:narrow/{organism.name}"]
        assert (crosscoder.cfg.n_models, crosscoder.cfg.d_hidden) == (2, 1024)
        recorded = json.loads((release_folder(get_release(pair.release)) / "cfg.json").read_text())["extra"]
        assert recorded["final_metrics"]["explained_variance"] > 0.6, recorded
        sae = load(narrow_diff_sae_path(organism.name))
        assert (sae.cfg.n_models, sae.cfg.d_hidden, sae.cfg.k) == (1, 512, 20)
        assert sae.cfg.hook_point == pair.hook_point and sae.cfg.model_names == [
            f"toy:narrow/{organism.name} - toy:chat"]
    with pytest.raises(KeyError, match="'tabo'"):
        narrow_diff_sae_path("tabo")


def test_the_readers_build_checks_its_organisms_and_folder_before_any_training(tmp_path):
    from helpers.builders.narrow_readers import build_narrow_readers

    with pytest.raises(ValueError, match="'tabo'"):
        build_narrow_readers(["tabo"], tmp_path)
    with pytest.raises(ValueError, match=r"got \[\]"):
        build_narrow_readers([], tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        build_narrow_readers(["taboo"], tmp_path / "missing" / "readers")
    assert not any(tmp_path.iterdir())
