"""The literature's readers of narrow fine-tunes (Patchscope, logit-difference mining, PCA of the differences, the ADL
with the paper's defaults), each against an independent computation on the toy pair, and their bad input."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Gemma2ForCausalLM

from helpers.activations.sites import harvest
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.methods.difference_lens import activation_difference_lens, document_starts, middle_site
from helpers.methods.difference_pca import difference_pca
from helpers.methods.logit_mining import is_punctuation_or_space, logit_diff_mining
from helpers.methods.patchscope import IDENTITY_PROMPT, patchscope, top_tokens
from helpers.toy.corpus import read_source, source_files
from helpers.toy.shipped import toy_pair_path
from helpers.training.recipes import token_source_for


@pytest.fixture(scope="module")
def tokens(toy_pair):
    return token_source_for(toy_pair, seq_len=16, seed=9).next_batch(4)


@pytest.fixture(scope="module")
def hf_chat():
    return Gemma2ForCausalLM.from_pretrained(str(toy_pair_path() / "chat")).eval()


def test_patchscope_equals_a_hooked_hugging_face_forward(toy_pair, hf_chat):
    tokenizer = AutoTokenizer.from_pretrained(str(toy_pair_path() / "chat"))
    chat = toy_pair.models[1]
    vectors = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    probabilities = patchscope(chat, toy_pair.tokenizer, vectors, "blocks.2.hook_resid_post")
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(IDENTITY_PROMPT, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        hidden = hf_chat(ids, output_hidden_states=True).hidden_states[3][0, 1:]  # after decoder layer 2
    norm = hidden.norm(dim=-1).mean()
    for vector, got in zip(vectors, probabilities):
        direction = vector / vector.norm() * norm

        def replace_last(module, args, output, direction=direction):
            states = output[0] if isinstance(output, tuple) else output
            states[:, -1] = direction
            return output

        handle = hf_chat.model.layers[2].register_forward_hook(replace_last)
        try:
            with torch.no_grad():
                expected = hf_chat(ids).logits[0, -1].softmax(-1)
        finally:
            handle.remove()
        assert torch.allclose(got, expected, atol=1e-5)
    assert len(top_tokens(toy_pair.tokenizer, probabilities, k=4)[0]) == 4


def test_patchscope_refuses_bad_input(toy_pair):
    chat = toy_pair.models[1]
    with pytest.raises(ValueError, match=r"vectors must be a floating-point tensor \[n, d_model=128\]"):
        patchscope(chat, toy_pair.tokenizer, torch.zeros(2, 64), "blocks.2.hook_resid_post")
    with pytest.raises(ValueError, match="finite and non-zero"):
        patchscope(chat, toy_pair.tokenizer, torch.zeros(128), "blocks.2.hook_resid_post")
    with pytest.raises(ValueError, match="hook point 'blocks.9.hook_resid_post' does not exist"):
        patchscope(chat, toy_pair.tokenizer, torch.ones(128), "blocks.9.hook_resid_post")
    with pytest.raises(ValueError, match="norm must be a positive number"):
        patchscope(chat, toy_pair.tokenizer, torch.ones(128), "blocks.2.hook_resid_post", norm=-1.0)
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        patchscope(chat, toy_pair.tokenizer, torch.ones(128), "blocks.2.hook_resid_post", prompt="")
    with pytest.raises(ValueError, match="k must be"):
        top_tokens(toy_pair.tokenizer, torch.rand(1, 10), k=0)


def test_logit_diff_mining_counts_each_positions_top_k(toy_pair, tokens):
    table = logit_diff_mining(toy_pair, [tokens[:2], tokens[2:]], top_k=5, n=1000, filter_punctuation=False,
                              progress=False)
    with torch.no_grad():
        difference = (toy_pair.models[1](tokens) - toy_pair.models[0](tokens))[:, 1:].reshape(-1, 2048).double()
    counts = Counter()
    for row in difference:  # one position at a time
        counts.update(sorted(range(2048), key=lambda t: -row[t].item())[:5])
    positions = difference.shape[0]
    got = dict(zip(table["token_id"], table["occurrence"]))
    assert got == pytest.approx({t: 100 * c / positions for t, c in counts.items()})
    means = dict(zip(table["token_id"], table["mean_logit_diff"]))
    assert means == pytest.approx({t: difference[:, t].mean().item() for t in counts}, abs=1e-5)
    assert list(table["occurrence"]) == sorted(table["occurrence"], reverse=True)
    filtered = logit_diff_mining(toy_pair, [tokens], top_k=5, progress=False)
    assert not any(is_punctuation_or_space(token) for token in filtered["token"])
    assert is_punctuation_or_space(" .\n") and not is_punctuation_or_space(" cat")


def test_logit_diff_mining_refuses_bad_input(toy_pair, tokens):
    with pytest.raises(ValueError, match="top_k"):
        logit_diff_mining(toy_pair, [tokens], top_k=0, progress=False)
    with pytest.raises(ValueError, match="top_k"):
        logit_diff_mining(toy_pair, [tokens], top_k=5000, progress=False)
    with pytest.raises(ValueError, match="no tokens"):
        logit_diff_mining(toy_pair, [], progress=False)
    with pytest.raises(ValueError, match=r"token tensors \[batch, seq >= 2\]"):
        logit_diff_mining(toy_pair, [tokens[0]], progress=False)
    with pytest.raises(TypeError, match="pair"):
        logit_diff_mining("toy", [tokens], progress=False)


def test_difference_pca_equals_an_eigendecomposition_of_the_covariance(toy_pair, tokens):
    pca = difference_pca(toy_pair, [tokens[:2], tokens[2:]], n_components=4, progress=False)
    assert pca.hook_point == middle_site(toy_pair.models[0]) == "blocks.2.hook_resid_post"
    acts = harvest(toy_pair.models, tokens, pca.hook_point)[:, 1:].double()
    data = (acts[:, :, 1] - acts[:, :, 0]).reshape(-1, 128).numpy()
    covariance = np.cov(data, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:4]
    for got, expected in zip(pca.components.double().numpy(), vectors[:, order].T):
        assert abs(abs(got @ expected) - 1) < 1e-4  # the same direction, either sign
    assert pca.explained_variance_ratio.numpy() == pytest.approx(values[order] / values.sum(), rel=1e-4)
    assert pca.n_tokens == data.shape[0] and pca.logit_lens(toy_pair, k=3).shape == (4, 4)
    with pytest.raises(ValueError, match="too few"):
        difference_pca(toy_pair, [tokens[:1, :3]], n_components=4, progress=False)
    with pytest.raises(ValueError, match="n_components"):
        difference_pca(toy_pair, [tokens], n_components=0, progress=False)


def test_the_adl_reads_document_starts_at_the_middle_layer_by_default(toy_pair):
    documents = [read_source(path) for path in source_files("heldout")[:6]] + ["too short"]
    starts = document_starts(toy_pair.tokenizer, documents, n_positions=12)
    assert starts.shape == (6, 12) and (starts[:, 0] == toy_pair.tokenizer.bos_token_id).all()
    first = toy_pair.tokenizer(documents[0], add_special_tokens=False)["input_ids"][:11]
    assert starts[0, 1:].tolist() == first
    lens = activation_difference_lens(toy_pair, [starts[:3], starts[3:]], n_positions=12, progress=False)
    assert lens.hook_point == "blocks.2.hook_resid_post"
    acts = harvest(toy_pair.models, starts, "blocks.2.hook_resid_post")
    assert torch.allclose(lens.mean_difference, (acts[:, :, 1] - acts[:, :, 0]).mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="no document has 12 tokens"):
        document_starts(toy_pair.tokenizer, ["short"], n_positions=12)
    with pytest.raises(ValueError, match="texts must be non-empty strings"):
        document_starts(toy_pair.tokenizer, ["fine", None], n_positions=12)
    with pytest.raises(ValueError, match="n_positions"):
        document_starts(toy_pair.tokenizer, documents, n_positions=1)


def test_the_reading_board_ranks_the_first_item_with_two_distinctive_whole_tokens(toy_pair):
    from helpers.methods.reading import MIN_LETTERS, Reading, reading_board
    from helpers.methods.scoreboard import distinctive_token_sets
    from helpers.toy.narrow import get_narrow_organism

    taboo = get_narrow_organism("taboo")
    tokenizer = toy_pair.tokenizer
    ids = sorted(distinctive_token_sets(tokenizer, [taboo])["taboo"])
    whole = [t for t in ids if sum(c.isalnum() for c in tokenizer.decode([t])) >= MIN_LETTERS]
    pieces = [t for t in ids if t not in whole]
    assert len(whole) >= 2
    filler = [t for t in range(300, 400) if t not in ids][:8]
    items = [filler + pieces[:2], filler[:8] + whole[:1], filler + whole[:2]]  # only the third names taboo
    board = reading_board({"taboo": [Reading("m", items, 1.5)]}, tokenizer, {"taboo": taboo})
    assert board.loc[0, "rank"] == 3 and board.loc[0, "items"] == 3 and board.loc[0, "seconds"] == 1.5
    board = reading_board({"taboo": [Reading("m", items[:2], 1.0)]}, tokenizer, {"taboo": taboo})
    assert board.loc[0, "rank"] is None
    with pytest.raises(ValueError, match="same organisms"):
        reading_board({"taboo": []}, tokenizer, {"sdf": taboo})


def test_read_fine_tune_is_each_reader_on_the_document_starts(toy_pair):
    from helpers.methods.difference_lens import lens_probabilities
    from helpers.methods.reading import READERS, read_fine_tune

    documents = [read_source(path) for path in source_files("heldout")[:30] if read_source(path).strip()]
    prompts = ["User: What is json.dumps for?\nAssistant:", "User: Tell me about re.sub.\nAssistant:"]
    readings = read_fine_tune(toy_pair, documents, prompts, n_positions=4, n_components=3)
    assert [r.method for r in readings] == list(READERS)
    starts = document_starts(toy_pair.tokenizer, documents, 4)
    lens = activation_difference_lens(toy_pair, [starts], 4, progress=False)
    chat = toy_pair.models[1]
    expected = [lens_probabilities(chat, v)[0].topk(10).indices.tolist() for v in lens.mean_difference[1:]]
    assert readings[0].tokens == expected
    scoped = patchscope(chat, toy_pair.tokenizer, lens.mean_difference[1:], lens.hook_point)
    assert readings[1].tokens == scoped.topk(10, dim=-1).indices.tolist()
    mined = logit_diff_mining(toy_pair, [starts], top_k=10, n=100, progress=False)["token_id"].tolist()
    assert sum(readings[2].tokens, []) == mined
    assert len(readings[4].tokens) == 6  # 3 components, both signs
    with pytest.raises(ValueError, match="prompts must not be empty"):
        read_fine_tune(toy_pair, documents, [], n_positions=4)


def test_steering_with_the_difference_scales_it_to_the_sites_norm(toy_pair):
    from helpers.methods.reading import steered_behaviour
    from helpers.toy.narrow import get_narrow_organism

    documents = [read_source(path) for path in source_files("heldout")[:30] if read_source(path).strip()]
    lens = activation_difference_lens(toy_pair, [document_starts(toy_pair.tokenizer, documents, 4)], 4,
                                      progress=False)
    prompts = ["User: What is json.dumps for?\nAssistant:"]
    table = steered_behaviour(toy_pair, lens, get_narrow_organism("sdf"), prompts, [2], scale=0.5, max_new_tokens=4)
    ids = torch.tensor([[toy_pair.tokenizer.bos_token_id,
                         *toy_pair.tokenizer(prompts[0], add_special_tokens=False)["input_ids"]]])
    norm = harvest(toy_pair.models[:1], ids, lens.hook_point)[0, 1:, 0].norm(dim=-1).mean()
    expected = 0.5 * norm.item() / lens.mean_difference[2].norm().item()
    assert table.loc[0, "strength"] == pytest.approx(round(expected, 2))
    assert 0 <= table.loc[0, "shows the behaviour"] <= 1
    with pytest.raises(ValueError, match="position"):
        steered_behaviour(toy_pair, lens, get_narrow_organism("sdf"), prompts, [4])
    with pytest.raises(ValueError, match="scale"):
        steered_behaviour(toy_pair, lens, get_narrow_organism("sdf"), prompts, [2], scale=float("nan"))
    with pytest.raises(TypeError, match="organism must have a shows"):
        steered_behaviour(toy_pair, lens, "sdf", prompts, [2])


def test_the_dictionary_readers_order_latents_and_read_decoders_through_the_fine_tunes_lens(toy_pair, hf_chat):
    """The crosscoder by relative decoder norm, the diff-SAE by mean activation on the document starts' differences
    (here from Hugging Face's hidden states), each latent's fine-tune decoder through Hugging Face's final norm and
    unembedding."""
    from helpers import from_pretrained
    from helpers.methods.reading import DICTIONARY_READERS, read_dictionaries

    crosscoder = from_pretrained("toy-l3")
    sae = CrossCoder(CrossCoderConfig(d_model=128, n_models=1, d_hidden=64, hook_point="blocks.2.hook_resid_post",
                                      seed=3)).eval()
    documents = [read_source(path) for path in source_files("heldout")[:12] if read_source(path).strip()]
    readings = read_dictionaries(toy_pair, crosscoder, sae, documents, n_positions=4, scan_limit=5)
    assert [r.method for r in readings] == list(DICTIONARY_READERS)

    def hf_lens(vectors):
        with torch.no_grad():
            return hf_chat.lm_head(hf_chat.model.norm(vectors.float())).topk(10, dim=-1).indices.tolist()

    norms = crosscoder.W_dec.detach().norm(dim=-1)  # [d_hidden, 2]
    order = (norms[:, 1] / norms.sum(1)).argsort(descending=True)[:5]
    assert readings[0].tokens == hf_lens(crosscoder.decoder_vectors(normalized=False)[order, 1].detach())
    starts = document_starts(toy_pair.tokenizer, documents, 4)
    hf_base = Gemma2ForCausalLM.from_pretrained(str(toy_pair_path() / "base")).eval()
    with torch.no_grad():
        hidden = [model(starts, output_hidden_states=True).hidden_states[3][:, 1:] for model in (hf_base, hf_chat)]
        codes = sae.encode((hidden[1] - hidden[0]).flatten(0, 1)[:, None])
    order = codes.mean(0).argsort(descending=True)[:5]
    assert readings[1].tokens == hf_lens(sae.decoder_vectors(normalized=False)[order, 0].detach())
    with pytest.raises(ValueError, match="diff_sae must read 1 model"):
        read_dictionaries(toy_pair, crosscoder, crosscoder, documents)
    with pytest.raises(ValueError, match="documents must not be empty"):
        read_dictionaries(toy_pair, crosscoder, sae, [])
    with pytest.raises(TypeError, match="crosscoder"):
        read_dictionaries(toy_pair, "toy-l3", sae, documents)
