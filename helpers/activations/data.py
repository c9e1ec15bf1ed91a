"""Token sources: batches of fixed-length token sequences ``[batch, seq_len]`` that start with BOS.

- ``ToyTokenSource``: the toy pair's corpus, stdlib source text and chat dialogues mixed 50/50 (as the
  replication mixed the Pile with LmSys-Chat).
- ``prompts_by_length``: prompts tokenised and grouped into unpadded equal-length batches.
- ``hub_data.HFTokenSource`` (its own module): a Hugging Face dataset, either pre-tokenised (an ``input_ids`` column,
  like the replication's ``ckkissane/pile-lmsys-mix-1m-tokenized-gemma-2``) or text / chat (tokenised and packed),
  streaming where the dataset allows.
- ``MixedTokenSource``: a text source and a chat source interleaved in a fixed proportion.
- ``TokenShard``: one data-parallel rank's disjoint share of any of them.

All are deterministic and expose ``state_dict`` / ``load_state_dict`` so training can resume exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..toy import organisms
from ..toy.token_ids import corpus_token_ids
from ..validation import positive_int, real

CHAT_TEMPLATE = "User: {instruction}\nAssistant: {completion}\n"


class SourceExhaustedError(RuntimeError):
    """A token or activation source has nothing more to serve.

    Deliberately not a ``StopIteration``: inside a generator or ``map()`` that would silently end the
    iteration and truncate an evaluation instead of failing it.
    """


def source_fingerprint(source) -> dict:
    """A source's ``fingerprint()`` (what it serves, as plain data), or its class name if it has none."""
    fingerprint = getattr(source, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else {"class": type(source).__qualname__}


class DataRowError(ValueError):
    """A dataset row that cannot be used: empty, ``None``, or a malformed conversation (the message names the
    dataset, the column and the row's index)."""


def chat_problem(messages: Any) -> str | None:
    """Why ``messages`` is not a usable conversation (a non-empty list of ``{"role": str, "content": str}``
    with some content), or ``None`` if it is."""
    if not isinstance(messages, list | tuple) or not messages:
        return f"a conversation must be a non-empty list of messages, got {messages!r:.80}"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"message {index} is a {type(message).__name__}, not a {{'role', 'content'}} mapping"
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                return f"message {index} has no {key!r} string (keys: {sorted(message)})"
    if not any(message["content"].strip() for message in messages):
        return "every message's content is empty"
    return None


def format_chat(messages: Sequence[dict]) -> str:
    """A conversation (``[{"role": "user" | "assistant", "content": ...}, ...]``) in the plain template.

    ``User: {instruction}\\nAssistant: {completion}\\n`` per turn, as the replication used (not the official
    Gemma template, which often breaks a base model); other roles (``system``) are left out. A malformed
    conversation is a ``DataRowError`` saying what is wrong.
    """
    problem = chat_problem(messages)
    if problem:
        raise DataRowError(problem)
    return "".join(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}\n"
                   for m in messages if m["role"] in ("user", "assistant"))


def pack(token_lists: Iterator[list[int]], seq_len: int, bos_id: int,
         special_ids: frozenset[int] = frozenset()) -> Iterator[list[int]]:
    """Concatenate token lists and cut rows of ``seq_len`` tokens, each starting with BOS; a row holding nothing
    but ``special_ids`` (and BOS) is dropped."""
    row: list[int] = [bos_id]
    for tokens in token_lists:
        for token in tokens:
            row.append(token)
            if len(row) == seq_len:
                if not special_ids.issuperset(row[1:]):
                    yield row
                row = [bos_id]


def pack_rows(stream: torch.Tensor, seq_len: int, bos_id: int) -> torch.Tensor:
    """``pack`` of a finite token stream ``[n_tokens]`` without ``special_ids``, all at once: ``[n_rows, seq_len]``
    (BOS, then the next ``seq_len - 1`` tokens; a last partial row is dropped)."""
    if not isinstance(stream, torch.Tensor) or stream.dim() != 1 or stream.is_floating_point():
        raise TypeError(f"stream must be a 1-D integer tensor of token ids, got {stream!r:.80}")
    positive_int("seq_len", seq_len, minimum=2)
    flat = stream.long()
    n_rows = flat.numel() // (seq_len - 1)
    body = flat[: n_rows * (seq_len - 1)].view(n_rows, seq_len - 1)
    return torch.cat([torch.full((n_rows, 1), bos_id, dtype=torch.long), body], dim=1)


class ToyTokenSource:
    """The toy corpus: rows of stdlib source and rows of packed dialogues (``dialogues``: ``"toy"`` or
    ``"organisms"``, see ``helpers.toy.organisms``), alternating (50/50).

    Each epoch serves every row once in a shuffled order seeded by ``(seed, epoch)``; a new epoch
    starts when either stream runs out (``epoch`` tells how often the corpus has been reused).
    """

    def __init__(self, tokenizer, seq_len: int = 128, split: str = "train", seed: int = 0, chat_fraction: float = 0.5,
                 dialogues: str = "toy"):
        real("chat_fraction", chat_fraction, 0, 1)
        positive_int("seq_len", seq_len, minimum=2)
        if dialogues not in organisms.DIALOGUE_SETS:
            raise ValueError(f"dialogues must be one of {sorted(organisms.DIALOGUE_SETS)}, got {dialogues!r}")
        self.seq_len, self.seed, self.chat_fraction, self.split = seq_len, seed, chat_fraction, split
        self.dialogues = dialogues
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        text_ids, dialogue_ids = corpus_token_ids(tokenizer, split, dialogues)
        order = torch.randperm(len(dialogue_ids), generator=torch.Generator().manual_seed(seed))
        self.text_rows = pack_rows(text_ids.joined(eos), seq_len, bos)
        self.chat_rows = pack_rows(dialogue_ids.joined(eos, order), seq_len, bos)
        self.epoch, self.position = 0, 0
        self._plan = self._epoch_plan(0)

    def _epoch_plan(self, epoch: int) -> torch.Tensor:
        """``[n, 2]`` (stream, row) pairs for one epoch: 0 = source text, 1 = dialogue."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        text = torch.randperm(len(self.text_rows), generator=generator)
        chat = torch.randperm(len(self.chat_rows), generator=generator)
        if self.chat_fraction in (0, 1):
            rows = chat if self.chat_fraction == 1 else text
            return torch.stack([torch.full_like(rows, int(self.chat_fraction)), rows], dim=1)
        n_chat = min(len(chat), int(len(text) * self.chat_fraction / (1 - self.chat_fraction)))
        n_text = min(len(text), int(n_chat * (1 - self.chat_fraction) / self.chat_fraction))
        is_chat = torch.zeros(n_chat + n_text, dtype=torch.long)
        is_chat[torch.randperm(n_chat + n_text, generator=generator)[:n_chat]] = 1
        index = torch.empty_like(is_chat)
        index[is_chat == 1] = chat[:n_chat]
        index[is_chat == 0] = text[:n_text]
        return torch.stack([is_chat, index], dim=1)

    @property
    def rows_per_epoch(self) -> int:
        return len(self._plan)

    def fingerprint(self) -> dict:
        return {"kind": "toy", "split": self.split, "seq_len": self.seq_len, "seed": self.seed,
                "chat_fraction": self.chat_fraction, "dialogues": self.dialogues}

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next ``batch_size`` rows ``[batch_size, seq_len]``."""
        positive_int("batch_size", batch_size)
        rows = []
        for _ in range(batch_size):
            if self.position == len(self._plan):
                self.epoch, self.position = self.epoch + 1, 0
                self._plan = self._epoch_plan(self.epoch)
            stream, index = self._plan[self.position].tolist()
            rows.append((self.chat_rows if stream else self.text_rows)[index])
            self.position += 1
        return torch.stack(rows)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan = self._epoch_plan(self.epoch)


def is_chat_row(row: int, chat_fraction: float) -> bool:
    """Whether row ``row`` of an even mix with ``chat_fraction`` chat rows is a chat row:
    ``floor((row + 1) f) > floor(row f)``."""
    return int((row + 1) * chat_fraction) > int(row * chat_fraction)


class MixedTokenSource:
    """Rows from two token sources in a fixed proportion: ``chat_fraction`` of the rows from ``chat``, the rest
    from ``text``, interleaved evenly (row ``r`` is a chat row when ``floor((r + 1) f) > floor(r f)``), as the
    replication mixed the Pile with LmSys-Chat 50/50. Deterministic and resumable."""

    def __init__(self, text, chat, chat_fraction: float = 0.5):
        self.text, self.chat = text, chat
        self.chat_fraction = real("chat_fraction", chat_fraction, 0, 1)
        self.rows = 0

    def _is_chat(self, row: int) -> bool:
        return is_chat_row(row, self.chat_fraction)

    def fingerprint(self) -> dict:
        return {"kind": "mix", "chat_fraction": self.chat_fraction, "text": source_fingerprint(self.text),
                "chat": source_fingerprint(self.chat)}

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """``[batch_size, seq_len]``: the next rows of the mix."""
        is_chat = torch.tensor([self._is_chat(self.rows + i) for i in range(positive_int("batch_size", batch_size))])
        n_chat = int(is_chat.sum())
        parts = {True: self.chat.next_batch(n_chat) if n_chat else None,
                 False: self.text.next_batch(batch_size - n_chat) if n_chat < batch_size else None}
        rows = torch.empty(batch_size, (parts[True] if n_chat else parts[False]).shape[1], dtype=torch.long)
        for flag, part in parts.items():
            if part is not None:
                rows[is_chat == flag] = part
        self.rows += batch_size
        return rows

    def state_dict(self) -> dict:
        return {"rows": self.rows, "text": self.text.state_dict(), "chat": self.chat.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rows = int(state["rows"])
        self.text.load_state_dict(state["text"])
        self.chat.load_state_dict(state["chat"])


class TokenShard:
    """Rank ``rank``'s disjoint share of a token source split over ``world_size`` data-parallel ranks.

    Each request for ``batch_size`` rows draws ``world_size * batch_size`` rows from ``source`` and keeps
    rows ``rank, rank + world_size, ...``: the ranks see disjoint rows, together exactly the stream one
    process would see, and resume from the position the shared stream had. Every rank reads (but does not
    run the models on) the whole stream, which costs little next to harvesting.
    """

    def __init__(self, source, rank: int, world_size: int):
        positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.source, self.rank, self.world_size = source, rank, world_size

    def fingerprint(self) -> dict:
        return {"shard": [self.rank, self.world_size], "tokens": source_fingerprint(self.source)}

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """``[batch_size, seq_len]``: this rank's rows of the next ``world_size * batch_size``."""
        rows = self.source.next_batch(positive_int("batch_size", batch_size) * self.world_size)
        return rows[self.rank :: self.world_size]

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)


def prompts_by_length(tokenizer, prompts: Sequence[str], device: str | torch.device = "cpu"
                      ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Tokenise ``prompts`` and group those of equal length: yields ``(indices, tokens [group, length])``.

    Equal-length prompts run as one batch with no padding (so nothing but the prompt enters the model).
    """
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(encoded):
        by_length[len(ids)].append(index)
    for indices in by_length.values():
        yield indices, torch.tensor([encoded[i] for i in indices], device=device)
