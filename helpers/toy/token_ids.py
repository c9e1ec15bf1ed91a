"""The toy corpus as token ids, tokenised once per machine: every toy token source starts from them.

Tokenising the corpus's train split (9.3M characters of source, 1.7M of dialogues) takes a fast tokenizer about 7 s
on two cores, and each notebook kernel and test process used to pay it again. ``corpus_token_ids`` keeps the ids
in memory for the process and on disk for the machine, in ``cache_folder()`` (``$CROSSCODER_CACHE``, else
``$XDG_CACHE_HOME/crosscoder-helpers`` or ``~/.cache/crosscoder-helpers``), under a hash of the tokenizer's whole
definition and of the texts themselves: a changed corpus, organism or tokenizer gives another file, so a cached
file is never stale. A cache folder that cannot be read or written is passed over (the ids are computed).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from ..files import write_atomically
from .corpus import read_source, source_files
from .organisms import DIALOGUE_SETS

CACHE_ENV = "CROSSCODER_CACHE"


@dataclass(frozen=True)
class TokenLists:
    """Token id lists stored flat: item ``i`` is ``ids[offsets[i]:offsets[i + 1]]``; ``ids`` ``[n_tokens]`` and
    ``offsets`` ``[n_items + 1]``, both int64."""

    ids: torch.Tensor
    offsets: torch.Tensor

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def item(self, index: int) -> list[int]:
        """The ids of item ``index``."""
        return self.ids[self.offsets[index]:self.offsets[index + 1]].tolist()

    def joined(self, end_id: int, order: torch.Tensor | None = None) -> torch.Tensor:
        """The items in ``order`` (a permutation ``[n_items]``; default: as stored), each followed by ``end_id``, as
        one stream ``[n_tokens + n_items]``."""
        n_items = len(self)
        order = torch.arange(n_items) if order is None else order
        if order.shape != (n_items,) or not torch.equal(order.sort().values, torch.arange(n_items)):
            raise ValueError(f"order must be a permutation of the {n_items} items, got shape {tuple(order.shape)}")
        lengths = (self.offsets[1:] - self.offsets[:-1])[order] + 1  # each item and its end token
        item = torch.repeat_interleave(torch.arange(n_items), lengths)  # [n_out]: which item each position is in
        starts = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(item.numel()) - starts[item]
        is_end = within == lengths[item] - 1
        source = (self.offsets[:-1][order][item] + within).clamp(max=max(self.ids.numel() - 1, 0))
        stream = self.ids[source] if self.ids.numel() else torch.zeros_like(item)
        return torch.where(is_end, torch.full_like(stream, end_id), stream)


def cache_folder() -> Path:
    """Where the token ids are kept between processes (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crosscoder-helpers"


def _tokenizer_digest(tokenizer) -> str | None:
    """A hash of a fast tokenizer's whole definition (vocabulary, merges, normaliser...), or None for a tokenizer
    without one (a slow tokenizer: then nothing is cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return hashlib.sha256(backend.to_str().encode()).hexdigest() if backend is not None else None


def _cache_key(tokenizer, texts: list[str]) -> str | None:
    """A hash of the tokenizer's definition and of ``texts`` (None where the tokenizer has no digest)."""
    tokenizer_digest = _tokenizer_digest(tokenizer)
    if tokenizer_digest is None:
        return None
    digest = hashlib.sha256(tokenizer_digest.encode())
    for text in texts:
        encoded = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def tokenized(tokenizer, texts: list[str]) -> TokenLists:
    """The ids of each of ``texts`` (no special tokens), from the disk cache when it has them."""
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise TypeError(f"texts must be a list of strings, got {texts!r:.80}")
    key = _cache_key(tokenizer, texts)
    path = cache_folder() / "token-ids" / f"{key}.pt" if key else None
    if path is not None and path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            lists = TokenLists(stored["ids"], stored["offsets"])
            if len(lists) == len(texts):
                return lists
        except (OSError, RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError):  # damaged: redo
            pass
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    lengths = torch.tensor([0] + [len(ids) for ids in encoded], dtype=torch.long)
    lists = TokenLists(torch.tensor([i for ids in encoded for i in ids], dtype=torch.long), torch.cumsum(lengths, 0))
    if path is not None:
        try:
            write_atomically(path, lambda tmp: torch.save({"ids": lists.ids, "offsets": lists.offsets}, tmp))
        except OSError:  # a read-only or full disk: the ids are still right, only not kept
            pass
    return lists


_IN_MEMORY: dict[tuple, tuple[TokenLists, TokenLists]] = {}


def corpus_token_ids(tokenizer, split: str, dialogues: str) -> tuple[TokenLists, TokenLists]:
    """The token ids (no special tokens) of each stdlib source file of ``split`` and of each of its ``dialogues``
    (``helpers.toy.organisms.DIALOGUE_SETS``), in corpus order: kept for the process, and on disk (``tokenized``)."""
    if dialogues not in DIALOGUE_SETS:
        raise ValueError(f"dialogues must be one of {sorted(DIALOGUE_SETS)}, got {dialogues!r}")
    key = (_tokenizer_digest(tokenizer) or id(tokenizer), split, dialogues)
    if key not in _IN_MEMORY:
        texts = [read_source(path) for path in source_files(split)]  # type: ignore[arg-type]
        _IN_MEMORY[key] = (tokenized(tokenizer, texts), tokenized(tokenizer, DIALOGUE_SETS[dialogues](split)))
    return _IN_MEMORY[key]
