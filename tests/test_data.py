"""Token sources: the toy mix, Hugging Face datasets from local files, chat formatting."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoTokenizer

from helpers.activations.data import DataRowError, SourceExhaustedError, ToyTokenSource, format_chat
from helpers.activations.hub_data import HFTokenSource
from helpers.toy.shipped import toy_pair_path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(toy_pair_path() / "base")


def test_format_chat_uses_plain_template():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "system", "content": "ignored"}]
    assert format_chat(messages) == "User: Hi\nAssistant: Hello.\n"


def test_toy_source_mixes_half_chat_half_text_and_resumes(tokenizer):
    source = ToyTokenSource(tokenizer, seq_len=64)
    batch = source.next_batch(400)
    assert batch.shape == (400, 64) and (batch[:, 0] == tokenizer.bos_token_id).all()
    user = tokenizer("User:", add_special_tokens=False)["input_ids"]
    has_dialogue = [any(row[i : i + len(user)].tolist() == user for i in range(64)) for row in batch]
    assert 0.4 < sum(has_dialogue) / 400 < 0.6
    state = source.state_dict()
    expected = source.next_batch(10)
    other = ToyTokenSource(tokenizer, seq_len=64)
    other.load_state_dict(state)
    assert torch.equal(other.next_batch(10), expected)


def test_hf_source_pretokenised_text_and_chat_from_local_files(tmp_path, tokenizer):
    bos = tokenizer.bos_token_id
    rows = [[bos, *range(10 + i, 26 + i)] for i in range(5)]
    (tmp_path / "tok.jsonl").write_text("\n".join(json.dumps({"input_ids": r}) for r in rows))
    source = HFTokenSource("json", tokenizer, seq_len=8, data_files=str(tmp_path / "tok.jsonl"))
    assert torch.equal(source.next_batch(2), torch.tensor([r[:8] for r in rows[:2]]))
    source.load_state_dict({"position": 4})
    assert torch.equal(source.next_batch(1), torch.tensor([rows[4][:8]]))
    with pytest.raises(SourceExhaustedError):
        source.next_batch(1)

    texts = [{"text": "def f(x):\n    return x * 2\n" * 3} for _ in range(4)]
    (tmp_path / "text.jsonl").write_text("\n".join(json.dumps(t) for t in texts))
    text_source = HFTokenSource("json", tokenizer, seq_len=16, column="text", data_files=str(tmp_path / "text.jsonl"))
    batch = text_source.next_batch(3)
    assert (batch[:, 0] == bos).all()
    decoded = tokenizer.decode(batch[0, 1:].tolist())
    assert decoded.startswith("def f(x):")

    chats = [{"messages": [{"role": "user", "content": "What does os.sep mean?"},
                           {"role": "assistant", "content": "The path separator."}]} for _ in range(6)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    chat_source = HFTokenSource("json", tokenizer, seq_len=16, column="messages",
                                data_files=str(tmp_path / "chat.jsonl"))
    assert tokenizer.decode(chat_source.next_batch(1)[0, 1:].tolist()).startswith("User: What does os.sep mean?")


CHAT_TEMPLATE_FOR_TEST = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return str(path)


def _pair_with_data(tokenizer, data):
    """A ModelPair carrying only what ``token_source_for`` reads: the profile, the tokenizers and the names."""
    from types import SimpleNamespace

    from helpers.activations.models import ModelPair
    from helpers.registry import PAIRS, register_pair

    chat_tokenizer = AutoTokenizer.from_pretrained(toy_pair_path() / "chat")
    chat_tokenizer.chat_template = CHAT_TEMPLATE_FOR_TEST
    profile = register_pair("test-own-data", "toy:base", "toy:chat", hook_point="blocks.1.hook_resid_post", data=data)
    PAIRS.pop("test-own-data")
    return ModelPair(models=[SimpleNamespace(tokenizer=tokenizer), SimpleNamespace(tokenizer=chat_tokenizer)],
                     names=["toy:base", "toy:chat"], tokenizer=tokenizer, hook_point=profile.hook_point,
                     profile=profile)


@pytest.fixture
def own_datasets(tmp_path):
    text = _jsonl(tmp_path / "text.jsonl", [{"text": f"def function_{i}(x):\n    return x + {i}\n"} for i in range(60)])
    chat = _jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": f"What is {i}?"},
                                                          {"role": "assistant", "content": f"It is {i}."}]}
                                            for i in range(60)])
    return {"text": {"path": "json", "data_files": text, "column": "text"},
            "chat": {"path": "json", "data_files": chat, "column": "messages"}}


def test_own_pair_mixes_text_and_chat_rendered_with_the_chat_template(tokenizer, own_datasets):
    from helpers.activations.data import MixedTokenSource
    from helpers.training.recipes import token_source_for

    source = token_source_for(_pair_with_data(tokenizer, {"kind": "hub", **own_datasets}), seq_len=16)
    assert isinstance(source, MixedTokenSource)
    rows = source.next_batch(6)
    texts = [tokenizer.decode(row[1:]) for row in rows]
    assert all(row[0] == tokenizer.bos_token_id for row in rows)
    assert ["<user>" in t or "<assistant>" in t for t in texts] == [False, True] * 3, texts  # 50/50, interleaved
    assert not any("User:" in t for t in texts), "the chat model's own template, not the plain one"
    state = source.state_dict()
    expected = source.next_batch(4)
    source.load_state_dict(state)
    assert torch.equal(source.next_batch(4), expected)


def test_pretokenised_data_of_another_tokenizer_is_refused(tokenizer, own_datasets, tmp_path, capsys):
    from helpers.training.recipes import DataTokenizerError, token_source_for

    other = AutoTokenizer.from_pretrained(toy_pair_path() / "base")
    other.add_tokens(["<an extra token>"])
    other.save_pretrained(tmp_path / "other-tokenizer")
    ids = _jsonl(tmp_path / "ids.jsonl", [{"input_ids": [tokenizer.bos_token_id] + list(range(5, 40))}] * 4)
    tokenized = {"path": "json", "data_files": ids, "column": "input_ids"}

    own = token_source_for(_pair_with_data(tokenizer, {"kind": "hub", "tokenized": {**tokenized,
                                                                                   "tokenizer": "toy:chat"}}), 16)
    assert own.next_batch(2).shape == (2, 16), "a dataset tokenised with one of the pair's models is used"
    foreign = {"kind": "hub", "tokenized": {**tokenized, "tokenizer": str(tmp_path / "other-tokenizer")}}
    with pytest.raises(DataTokenizerError, match="different tokenizers.*text and chat datasets"):
        token_source_for(_pair_with_data(tokenizer, foreign), 16)
    with pytest.raises(DataTokenizerError, match="does not name the tokenizer"):
        token_source_for(_pair_with_data(tokenizer, {"kind": "hub", "tokenized": tokenized}), 16)
    fallback = token_source_for(_pair_with_data(tokenizer, {**foreign, **own_datasets}), 16)
    assert type(fallback).__name__ == "MixedTokenSource" and "not using" in capsys.readouterr().out


def test_pretokenised_ids_beyond_the_vocabulary_are_refused(tokenizer, tmp_path):
    ids = _jsonl(tmp_path / "ids.jsonl", [{"input_ids": [1, 2, len(tokenizer) + 5] * 10}])
    with pytest.raises(ValueError, match="beyond the pair's vocabulary"):
        HFTokenSource("json", tokenizer, seq_len=8, data_files=ids)


GOOD_CHAT = [{"role": "user", "content": "What does os.path.join do?"}, {"role": "assistant", "content": "Joins."}]


@pytest.mark.parametrize(("column", "bad", "problem"), [
    ("text", "", "row 1: the text is empty"),
    ("text", None, "row 1: the text is None, not a string"),
    ("messages", [{"content": "no role"}], "row 1: message 0 has no 'role' string"),
    ("messages", [{"role": "user"}], "row 1: message 0 has no 'content' string"),
    ("messages", ["User: hi"], "row 1: message 0 is a str, not a"),
    ("messages", [], "row 1: a conversation must be a non-empty list"),
    ("messages", [{"role": "user", "content": " "}], "row 1: every message's content is empty"),
    ("input_ids", [], "row 1: the row is [], not a non-empty list of token ids"),
])
def test_bad_rows_are_refused_with_their_index_and_column_or_skipped_and_counted(tmp_path, tokenizer, capsys,
                                                                                 column, bad, problem):
    good = {"text": "def f(x): return x", "messages": GOOD_CHAT,
            "input_ids": [tokenizer.bos_token_id, *range(5, 40)]}[column]
    path = _jsonl(tmp_path / "rows.jsonl", [{column: value} for value in [good, bad, good, bad, good] + [good] * 20])
    with pytest.raises(DataRowError, match=rf"column '{column}', {re.escape(problem)}.*skip_bad_rows=True"):
        HFTokenSource("json", tokenizer, seq_len=8, column=column, data_files=path).next_batch(12)
    source = HFTokenSource("json", tokenizer, seq_len=8, column=column, data_files=path, skip_bad_rows=True)
    batch = source.next_batch(12)
    assert source.skipped_rows == 2 and "skipped 2 bad row(s)" in capsys.readouterr().out
    assert batch.shape == (12, 8)


def test_no_served_row_is_only_special_tokens(tmp_path, tokenizer):
    """A dataset whose texts encode to nothing but special tokens yields no rows (before: rows of BOS + EOS)."""
    specials = "".join(tokenizer.convert_ids_to_tokens([tokenizer.eos_token_id])) * 3
    path = _jsonl(tmp_path / "special.jsonl", [{"text": specials}] * 40 + [{"text": "def f(x): return x\n" * 8}])
    source = HFTokenSource("json", tokenizer, seq_len=8, column="text", data_files=path)
    special = set(tokenizer.all_special_ids)
    rows = source.next_batch(2)
    assert all(not set(row[1:].tolist()) <= special for row in rows)


def test_format_chat_refuses_malformed_conversations():
    with pytest.raises(DataRowError, match="message 1 has no 'content'"):
        format_chat([{"role": "user", "content": "hi"}, {"role": "assistant"}])
    assert format_chat([{"role": "system", "content": "Be brief."}, *GOOD_CHAT]).startswith("User: What does")


def test_hf_source_checks_its_arguments(tokenizer):
    for kwargs, error in (({"path": ""}, "path must be"), ({"path": "json", "column": ""}, "column must be"),
                          ({"path": "json", "skip_bad_rows": "yes"}, "skip_bad_rows must be True or False"),
                          ({"path": "json", "seq_len": 1}, "seq_len")):
        with pytest.raises((ValueError, TypeError), match=error):
            HFTokenSource(tokenizer=tokenizer, **kwargs)


def test_pack_rows_equals_pack():
    from helpers.activations.data import pack, pack_rows

    generator = torch.Generator().manual_seed(0)
    lists = [torch.randint(3, 50, (int(n),), generator=generator).tolist()
             for n in torch.randint(0, 30, (40,), generator=generator)]
    stream = torch.tensor([token for ids in lists for token in ids])
    for seq_len in (2, 7, 16):
        expected = torch.tensor(list(pack(iter(lists), seq_len, bos_id=1)), dtype=torch.long)
        assert torch.equal(pack_rows(stream, seq_len, bos_id=1), expected.view(-1, seq_len))
    with pytest.raises(TypeError, match="1-D integer tensor"):
        pack_rows(lists, 7, bos_id=1)
    with pytest.raises(TypeError, match="1-D integer tensor"):
        pack_rows(stream.float(), 7, bos_id=1)
    with pytest.raises(ValueError, match="seq_len"):
        pack_rows(stream, 1, bos_id=1)


def test_token_lists_join_each_item_with_its_end_token_in_any_order(tmp_path, monkeypatch):
    """``TokenLists.joined`` equals the items concatenated in order, each followed by the end token, and
    ``tokenized`` gives the tokenizer's own ids, from a fresh computation and from its disk cache alike."""
    from helpers.toy.token_ids import CACHE_ENV, TokenLists, cache_folder, tokenized

    generator = torch.Generator().manual_seed(1)
    lists = [torch.randint(3, 50, (int(n),), generator=generator).tolist()
             for n in torch.randint(0, 9, (30,), generator=generator)]
    lengths = torch.tensor([0] + [len(ids) for ids in lists])
    flat = TokenLists(torch.tensor([t for ids in lists for t in ids]), torch.cumsum(lengths, 0))
    order = torch.randperm(30, generator=generator)
    for permutation in (None, order):
        chosen = range(30) if permutation is None else permutation.tolist()
        expected = [token for i in chosen for token in [*lists[i], 2]]
        assert flat.joined(2, permutation).tolist() == expected
    assert [flat.item(i) for i in range(30)] == lists
    with pytest.raises(ValueError, match="permutation of the 30 items"):
        flat.joined(2, torch.zeros(30, dtype=torch.long))

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_folder() == tmp_path
    tokenizer = AutoTokenizer.from_pretrained(toy_pair_path() / "base")
    texts = ["def f(x):\n    return x", "", "User: What does json.dumps do?\nAssistant:"]
    direct = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    fresh = tokenized(tokenizer, texts)
    assert [fresh.item(i) for i in range(3)] == direct
    assert len(list((tmp_path / "token-ids").glob("*.pt"))) == 1
    cached = tokenized(tokenizer, texts)
    assert torch.equal(cached.ids, fresh.ids) and torch.equal(cached.offsets, fresh.offsets)
    next((tmp_path / "token-ids").glob("*.pt")).write_bytes(b"damaged")
    assert [tokenized(tokenizer, texts).item(i) for i in range(3)] == direct, "a damaged file is computed again"
    assert len(list((tmp_path / "token-ids").glob("*.pt"))) == 1 and tokenized(tokenizer, texts[:2]).item(1) == []
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        tokenized(tokenizer, "def f(): pass")
    from helpers.toy.token_ids import corpus_token_ids

    with pytest.raises(ValueError, match="'organism'"):
        corpus_token_ids(tokenizer, "train", "organism")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a-file"))
    assert [tokenized(tokenizer, texts).item(i) for i in range(3)] == direct, "an unusable cache folder is passed over"
