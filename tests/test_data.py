"""Token sources: the toy mix, Hugging Face datasets from local files, chat formatting."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from helpers.data import HFTokenSource, SourceExhaustedError, ToyTokenSource, format_chat
from helpers.toy import toy_pair_path


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
