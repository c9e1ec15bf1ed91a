"""Rows from a Hugging Face dataset (``HFTokenSource``): pre-tokenised ids, or text and chat columns tokenised with the
pair's tokenizer, packed into rows; or the documents themselves, for models with separate tokenizers."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..validation import positive_int
from .data import DataRowError, SourceExhaustedError, chat_problem, format_chat, pack


class HFTokenSource:
    """Rows from a Hugging Face dataset: pre-tokenised ``input_ids`` or a text / chat column.

    Args:
        path, name, split, data_files: passed to ``datasets.load_dataset``.
        tokenizer: used for text and chat columns (and for its BOS id).
        seq_len: tokens per row, BOS included.
        column: ``input_ids`` (pre-tokenised rows, truncated to ``seq_len``; every id must be in the
            tokenizer's vocabulary), a text column, or a chat column holding a list of ``{"role", "content"}``
            messages, rendered with ``chat_tokenizer``'s chat template when it has one (the chat model's own,
            as it was fine-tuned on), else with the plain ``format_chat`` template.
        streaming: stream instead of downloading the whole dataset.
        skip_bad_rows: a row that is empty, ``None``, or a malformed conversation (a message without a role or
            content, a message that is no mapping) raises ``DataRowError`` naming its index and column; with
            ``True`` it is skipped instead, the count printed (``skipped_rows`` holds it). A packed row of only
            special tokens is never served.
    """

    def __init__(self, path: str, tokenizer, seq_len: int = 1024, column: str = "input_ids", split: str = "train",
                 name: str | None = None, data_files=None, streaming: bool = True, chat_tokenizer=None,
                 skip_bad_rows: bool = False):
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be a dataset id or folder, got {path!r}")
        if not isinstance(column, str) or not column:
            raise ValueError(f"column must be a column name, got {column!r}")
        if not isinstance(skip_bad_rows, bool):
            raise TypeError(f"skip_bad_rows must be True or False, got {skip_bad_rows!r}")
        self.args = dict(path=path, name=name, split=split, data_files=data_files, streaming=streaming)
        self.tokenizer, self.seq_len, self.column = tokenizer, positive_int("seq_len", seq_len, minimum=2), column
        self.chat_tokenizer = chat_tokenizer if getattr(chat_tokenizer, "chat_template", None) else None
        self.skip_bad_rows, self.skipped_rows = skip_bad_rows, 0
        self.position = 0
        self._rows = self._row_iterator()

    def _open(self) -> tuple[Any, Iterator[Any]]:
        """The first row's value in ``column`` and an iterator over every row's (the first included)."""
        import datasets

        try:  # datasets itself raises a bare StopIteration on an empty file
            dataset = datasets.load_dataset(**{k: v for k, v in self.args.items() if v is not None})
            rows = iter(dataset)
            first_row = next(rows, None)
        except StopIteration:
            first_row = None
        if first_row is None:
            raise SourceExhaustedError(f"dataset {self.args['path']!r} ({self.args['split']}) is empty")
        if self.column not in first_row:
            raise ValueError(f"dataset {self.args['path']!r} has no column {self.column!r}; its columns are "
                             f"{sorted(first_row)}")
        return first_row[self.column], (row[self.column] for row in itertools.chain([first_row], rows))

    @staticmethod
    def _holds_ids(first: Any) -> bool:
        return isinstance(first, list) and (not first or isinstance(first[0], int))

    def _texts(self, first: Any, examples: Iterator[Any]) -> Iterator[str]:
        """A text or chat column's usable examples as text (a conversation rendered, ``render_chat``)."""
        if isinstance(first, list):
            return (self.render_chat(messages) for messages in self._checked(examples, chat_problem))
        if isinstance(first, str) or first is None:
            return self._checked(examples, self._text_problem)
        raise ValueError(f"column {self.column!r} holds {type(first).__name__}; expected token ids, text or chat")

    def _row_iterator(self) -> Iterator[list[int]]:
        first, examples = self._open()
        bos = self.tokenizer.bos_token_id
        special = frozenset(self.tokenizer.all_special_ids)
        if self._holds_ids(first):
            if first and max(first) >= len(self.tokenizer):
                raise ValueError(f"dataset {self.args['path']!r} holds token id {max(first)}, beyond the pair's "
                                 f"vocabulary of {len(self.tokenizer)}: it was tokenised with another tokenizer")
            ids = self._checked(examples, self._ids_problem)
            rows_ = (row[: self.seq_len] if row[0] == bos else [bos, *row[: self.seq_len - 1]]
                     for row in ids if len(row) >= self.seq_len)
            return (row for row in rows_ if not special.issuperset(row[1:]))
        eos = self.tokenizer.eos_token_id
        token_lists = (self.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
                       for text in self._texts(first, examples))
        return pack(token_lists, self.seq_len, bos, special)

    def documents(self, n: int) -> list[str]:
        """The column's first ``n`` usable documents as text, untokenised (a conversation rendered with
        ``render_chat``): what each model of a pair with separate tokenizers reads with its own tokenizer. Fewer when
        the dataset holds fewer; a ``ValueError`` for a column of token ids."""
        positive_int("n", n)
        first, examples = self._open()
        if self._holds_ids(first):
            raise ValueError(f"column {self.column!r} of dataset {self.args['path']!r} holds token ids, not text: "
                             "models with separate tokenizers each need the text")
        return list(itertools.islice(self._texts(first, examples), n))

    @staticmethod
    def _text_problem(text: Any) -> str | None:
        if not isinstance(text, str):
            return f"the text is {text!r:.80}, not a string"
        return None if text.strip() else "the text is empty"

    def _ids_problem(self, ids: Any) -> str | None:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return f"the row is {ids!r:.80}, not a non-empty list of token ids"
        if min(ids) < 0 or max(ids) >= len(self.tokenizer):
            return f"token id {max(ids) if max(ids) >= len(self.tokenizer) else min(ids)} is outside the pair's " \
                   f"vocabulary of {len(self.tokenizer)}"
        return None

    def _checked(self, examples: Iterator[Any], problem_of: Callable[[Any], str | None]) -> Iterator[Any]:
        """The usable examples; a bad one raises ``DataRowError`` with its index, or is skipped and counted."""
        for index, example in enumerate(examples):
            problem = problem_of(example)
            if problem is None:
                yield example
                continue
            where = f"dataset {self.args['path']!r}, column {self.column!r}, row {index}"
            if not self.skip_bad_rows:
                raise DataRowError(f"{where}: {problem}. Fix the data, or pass skip_bad_rows=True (in a registered "
                                   f"pair's data: {{..., skip_bad_rows: true}}) to skip such rows")
            self.skipped_rows += 1
            if self.skipped_rows & (self.skipped_rows - 1) == 0:  # 1, 2, 4, 8, ...: a count that never floods
                print(f"skipped {self.skipped_rows} bad row(s) of dataset {self.args['path']!r} so far "
                      f"(latest: row {index}: {problem})")

    def render_chat(self, messages: Sequence[dict]) -> str:
        """A conversation as text: the chat model's template (its leading BOS left to ``pack``), or ``format_chat``."""
        if self.chat_tokenizer is None:
            return format_chat(messages)
        text = self.chat_tokenizer.apply_chat_template(list(messages), tokenize=False)
        bos = self.chat_tokenizer.bos_token
        return text[len(bos):] if bos and text.startswith(bos) else text

    def fingerprint(self) -> dict:
        return {"kind": "hub", **{k: v for k, v in self.args.items() if k != "streaming"}, "column": self.column,
                "seq_len": self.seq_len, "chat_template": self.chat_tokenizer is not None}

    def next_batch(self, batch_size: int) -> torch.Tensor:
        positive_int("batch_size", batch_size)
        rows = list(itertools.islice(self._rows, batch_size))
        if len(rows) < batch_size:
            raise SourceExhaustedError(
                f"dataset {self.args['path']!r} is exhausted after {self.position + len(rows)} rows")
        self.position += batch_size
        return torch.tensor(rows, dtype=torch.long)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Skip to ``state["position"]`` rows from the start (re-reads the stream up to there)."""
        self._rows = self._row_iterator()
        self.position = 0
        skip = int(state["position"])
        consumed = sum(1 for _ in itertools.islice(self._rows, skip))
        if consumed < skip:
            raise ValueError(f"cannot resume at row {skip}: the dataset has only {consumed} rows")
        self.position = skip
