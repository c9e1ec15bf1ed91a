"""Pairing two models with different tokenizers (``helpers.activations.alignment``).

The alignment is checked against an independent computation: decode each tokenization's prefixes one token at a
time; a token "completes" the text up to ``len(prefix)`` when the decoded prefix is the text's own prefix (a byte
piece of an unfinished character decodes to a replacement character and completes nothing). The aligned pairs are
then the offsets both sides complete, each with the last token completing it. Three tokenizers: the toy pair's and the
rehearsal Llama's (byte-level BPE, 2,048 and 1,024 tokens) and a SentencePiece-style BPE with byte fallback built
here. Then a tokenizer-mismatched pair (the toy base model and a random Llama of the same width on the other
tokenizer) trains end to end.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from helpers.activations.alignment import (
    AlignedHarvestingSource,
    AlignmentError,
    aligned_positions,
    token_end_offsets,
)
from helpers.activations.buffer import ShufflingBuffer
from helpers.builders.rehearsal_llama import llama_path
from helpers.toy.shipped import toy_pair_path

TEXTS = [
    "def f(x):  return x 🙂  é\n\tok",
    "emoji 🙂🙃 and  three   spaces\tтаб, naïve café",
    "x = [1, 2]    # 💡 a comment with\u00a0a no-break space",
    "    indented\n\n\nblank lines 🇫🇷 flag (two code points), ZWJ 👩‍💻 and CJK 漢字",
]


def byte_fallback_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE (``▁`` for spaces) whose unknown characters fall back to ``<0xNN>`` byte tokens."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{i:02X}>": 3 + i for i in range(256)}}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789()[]=#,:.\t\n▁":
        vocab.setdefault(char, len(vocab))
    merges = [("▁", "a"), ("d", "e"), ("▁", "x"), ("r", "e"), ("▁", "t")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def completed_offsets(tokenizer, text: str) -> dict[int, int]:
    """Independent of offsets: {end offset: last token index} from decoding every prefix of the tokenization."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    completed = {}
    for index in range(len(ids)):
        prefix = tokenizer.decode(ids[: index + 1], clean_up_tokenization_spaces=False)
        if prefix and text.startswith(prefix):
            completed[len(prefix)] = index
    return completed


@pytest.fixture(scope="module")
def tokenizers():
    return {"toy": AutoTokenizer.from_pretrained(toy_pair_path() / "base"),
            "llama": AutoTokenizer.from_pretrained(llama_path() / "base"),
            "byte fallback": byte_fallback_tokenizer()}


@pytest.mark.parametrize("names", [("toy", "llama"), ("toy", "byte fallback"), ("llama", "byte fallback")])
@pytest.mark.parametrize("text", TEXTS)
def test_alignment_equals_the_decoded_prefixes(tokenizers, names, text):
    first, second = (tokenizers[name] for name in names)
    in_a, in_b = aligned_positions(token_end_offsets(first, text)[1], token_end_offsets(second, text)[1])
    done_a, done_b = completed_offsets(first, text), completed_offsets(second, text)
    common = sorted(set(done_a) & set(done_b))
    assert (in_a, in_b) == ([done_a[end] for end in common], [done_b[end] for end in common])
    assert len(text) in common, "the end of the text always lines up"
    assert 0 < len(in_a) < min(len(done_a), len(done_b)) + 1


def test_byte_pieces_pair_only_where_the_character_is_complete(tokenizers):
    text = "a 🙂"
    ids, ends = token_end_offsets(tokenizers["byte fallback"], text)
    assert tokenizers["byte fallback"].convert_ids_to_tokens(ids)[-4:] == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
    assert ends[-4:] == [3, 3, 3, 3]
    in_a, in_b = aligned_positions(ends, token_end_offsets(tokenizers["toy"], text)[1])
    assert in_a[-1] == len(ids) - 1, "the last byte piece, where the emoji is complete"


def test_alignment_refuses_bad_input(tokenizers):
    with pytest.raises(ValueError, match="non-decreasing"):
        aligned_positions([1, 3, 2], [1, 2, 3])
    with pytest.raises(TypeError, match="string"):
        token_end_offsets(tokenizers["toy"], ["not", "a", "string"])
    slow = type("SlowTokenizer", (), {"is_fast": False})()
    with pytest.raises(AlignmentError, match="fast tokenizer"):
        token_end_offsets(slow, "text")


@pytest.fixture(scope="module")
def mismatched_pair(tmp_path_factory):
    """The toy base model (Gemma architecture, its own tokenizer) and a random Llama of the same width on the
    rehearsal tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from helpers.activations.models import load_model

    folder = tmp_path_factory.mktemp("llama-128")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(llama_path() / "base").save_pretrained(folder)
    models_ = [load_model(str(toy_pair_path() / "base")), load_model(str(folder))]
    tokenizers_ = [AutoTokenizer.from_pretrained(toy_pair_path() / "base"), AutoTokenizer.from_pretrained(folder)]
    return models_, tokenizers_


def documents(n: int) -> list[str]:
    from helpers.toy.corpus import read_source, source_files

    return [read_source(path)[:1500] for path in source_files("train")[:n]]


def test_a_tokenizer_mismatched_pair_trains_end_to_end(mismatched_pair):
    from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
    from helpers.training.config import TrainConfig
    from helpers.training.trainer import Trainer

    models_, tokenizers_ = mismatched_pair
    source = AlignedHarvestingSource(models_, tokenizers_, documents(24), ["blocks.3.hook_resid_post",
                                                                           "blocks.1.hook_resid_post"],
                                     max_chars=1500, texts_per_batch=8)
    first = source.next_activations(300)
    assert first.shape == (300, 2, 128) and torch.isfinite(first).all()
    assert 0.5 <= source.alignment_yield <= 1.0
    state = source.state_dict()
    expected = source.next_activations(200)
    source.load_state_dict(state)
    assert torch.equal(source.next_activations(200), expected), "resuming serves the same pairs"

    buffer = ShufflingBuffer(source, buffer_tokens=1024, seed=0)
    crosscoder = CrossCoder(CrossCoderConfig(d_model=128, d_hidden=256, activation="batchtopk", k=8))
    crosscoder.set_normalization((128 ** 0.5) / first.norm(dim=-1).mean(0))
    history = Trainer(crosscoder, buffer, TrainConfig(num_tokens=256 * 12, batch_size=256, lr=1e-3, l1_coeff=0.0,
                                                      log_every=1)).train()
    assert len(history) == 12
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]
    assert all(torch.isfinite(torch.tensor([h["explained_variance_base"], h["explained_variance_chat"]])).all()
               for h in history)


def test_too_low_a_yield_is_refused_before_training(mismatched_pair):
    models_, tokenizers_ = mismatched_pair
    source = AlignedHarvestingSource(models_, tokenizers_, documents(4), ["blocks.3.hook_resid_post",
                                                                          "blocks.1.hook_resid_post"],
                                     texts_per_batch=4, min_yield=1.0)
    with pytest.raises(AlignmentError, match="line up at .* below min_yield=100%"):
        source.next_activations(10)


def test_aligned_source_refuses_bad_input(mismatched_pair):
    models_, tokenizers_ = mismatched_pair
    sites = ["blocks.3.hook_resid_post", "blocks.1.hook_resid_post"]
    with pytest.raises(ValueError, match="texts must not be empty"):
        AlignedHarvestingSource(models_, tokenizers_, [], sites)
    with pytest.raises(ValueError, match="hook_points must hold one entry per model"):
        AlignedHarvestingSource(models_, tokenizers_, ["text"], sites[:1])
    with pytest.raises(ValueError, match="hook point 'blocks.9.hook_resid_post' does not exist"):
        AlignedHarvestingSource(models_, tokenizers_, ["text"], [sites[0], "blocks.9.hook_resid_post"])
    with pytest.raises(ValueError, match="min_yield"):
        AlignedHarvestingSource(models_, tokenizers_, ["text"], sites, min_yield=1.5)
    with pytest.raises(ValueError, match="max_chars"):
        AlignedHarvestingSource(models_, tokenizers_, ["text"], sites, max_chars=0)
    with pytest.raises(ValueError, match="texts_per_batch"):
        AlignedHarvestingSource(models_, tokenizers_, ["text"], sites, texts_per_batch=-1)
    with pytest.raises(ValueError, match="non-empty strings"):
        AlignedHarvestingSource(models_, tokenizers_, ["text", ""], sites)
    with pytest.raises(TypeError, match="texts must be a list"):
        AlignedHarvestingSource(models_, tokenizers_, "one text", sites)


@pytest.fixture(scope="module")
def llama_folder(mismatched_pair, tmp_path_factory):
    return sorted(tmp_path_factory.getbasetemp().glob("llama-128*"))[0]


def test_a_pair_with_separate_tokenizers_refuses_one_tokenizer_use(llama_folder):
    from helpers import token_source_for
    from helpers.activations.models import ModelPairError, load_model_pair

    names = [str(toy_pair_path() / "base"), str(llama_folder)]
    with pytest.raises(ModelPairError, match="different tokenizers"):
        load_model_pair(*names, hook_point="blocks.1.hook_resid_post")
    pair = load_model_pair(*names, hook_point="blocks.1.hook_resid_post", tokenizers="separate")
    assert pair.separate_tokenizers and len(pair.tokenizers) == 2
    assert pair.tokenizer_of(1) is pair.tokenizers[1]
    with pytest.raises(ValueError, match="index must be a model index"):
        pair.tokenizer_of(2)
    assert pair.at("blocks.0.hook_resid_post").separate_tokenizers
    with pytest.raises(ModelPairError, match="separate tokenizers: one token stream cannot feed both models"):
        token_source_for(pair, 16)
    with pytest.raises(ModelPairError, match="separate tokenizers .* needs one tokenizer"):
        pair.tokenizer("some text")
    with pytest.raises(ModelPairError, match="separate tokenizers"):
        pair.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(ModelPairError, match="tokenizers must be one of"):
        load_model_pair(*names, hook_point="blocks.1.hook_resid_post", tokenizers="seperate")


def test_the_registry_takes_and_checks_a_tokenizer_mode(llama_folder):
    from helpers.registry import PAIRS, RegistryError, register_pair

    try:
        pair = register_pair("test-separate", str(toy_pair_path() / "base"), str(llama_folder),
                             hook_point="blocks.1.hook_resid_post", tokenizers="separate")
        assert pair.tokenizers == "separate"
        with pytest.raises(RegistryError, match="tokenizers: 'seperate' is not one of .*did you mean 'separate'"):
            register_pair("test-typo", "a", "b", hook_point="blocks.1.hook_resid_post", tokenizers="seperate")
    finally:
        PAIRS.pop("test-separate", None)
        PAIRS.pop("test-typo", None)


def test_training_record_reads_the_release_and_refuses_bad_names():
    from helpers import training_record
    from helpers.registry import RegistryError

    assert training_record("toy-vs-llama-dfc")["alignment_yield"] == pytest.approx(0.9643)
    assert training_record("gemma-2-2b-l14-replication") == {}, "a Hub release in another format: no download"
    with pytest.raises(RegistryError, match="unknown crosscoder release 'toy-vs-llama-dcf'. Did you mean"):
        training_record("toy-vs-llama-dcf")
    with pytest.raises(TypeError, match="Release or a release's name"):
        training_record(3)


def test_last_token_pairs_are_each_models_last_position(mismatched_pair):
    from helpers.activations.alignment import last_token_pairs

    models_, tokenizers_ = mismatched_pair
    prompts = ["User: What does os.path.join do?\nAssistant:", "x = 1  # 🙂"]
    sites = ["blocks.3.hook_resid_post", "blocks.1.hook_resid_post"]
    pairs = last_token_pairs(models_, tokenizers_, prompts, sites)
    assert pairs.shape == (2, 2, 128)
    for side, (model, tokenizer, site) in enumerate(zip(models_, tokenizers_, sites)):
        for row, prompt in enumerate(prompts):
            tokens = torch.tensor([[tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
            _, cache = model.run_with_cache(tokens, names_filter=[site])  # the full forward pass, cached
            assert torch.allclose(pairs[row, side], cache[site][0, -1].float(), atol=1e-5)
    with pytest.raises(ValueError, match="texts must not be empty"):
        last_token_pairs(models_, tokenizers_, [], sites)


def test_alignment_report_counts_what_aligned_positions_finds(tokenizers):
    from helpers.activations.alignment import alignment_report

    pair_ = [tokenizers["toy"], tokenizers["llama"]]
    report = alignment_report(pair_, TEXTS)
    expected = sum(len(aligned_positions(token_end_offsets(pair_[0], t)[1], token_end_offsets(pair_[1], t)[1])[0])
                   for t in TEXTS)
    counts = [sum(len(token_end_offsets(tok, t)[0]) for t in TEXTS) for tok in pair_]
    assert report["aligned"] == expected and [report["tokens_a"], report["tokens_b"]] == counts
    assert report["yield_coarser"] == pytest.approx(expected / min(counts))
    with pytest.raises(ValueError, match="two tokenizers"):
        alignment_report(pair_[:1], TEXTS)


def test_aligned_pairs_go_through_the_disk_cache(mismatched_pair, tmp_path):
    from helpers.activations.buffer import DiskCacheSource, write_disk_cache

    models_, tokenizers_ = mismatched_pair
    sites = ["blocks.3.hook_resid_post", "blocks.1.hook_resid_post"]

    def source():
        return AlignedHarvestingSource(models_, tokenizers_, documents(12), sites, max_chars=1500, texts_per_batch=4)

    write_disk_cache(source(), tmp_path / "cache", n_tokens=600, shard_tokens=256, storage_dtype="float32")
    cached = DiskCacheSource(tmp_path / "cache")
    assert torch.equal(cached.next_activations(600), source().next_activations(600))
    assert cached.fingerprint()["aligned"] is True
