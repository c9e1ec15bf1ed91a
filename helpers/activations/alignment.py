"""Paired activations for two models with different tokenizers (and so, possibly, different architectures).

Two tokenizers cut the same text at different places, so "the activation at token 7" means different things in the
two models. Where both tokenizations *end a token at the same character offset*, though, each model has read exactly
the same characters (after its own BOS), and their activations there can be paired. ``aligned_positions`` keeps
those positions and drops the rest; where several tokens end at one offset (the byte pieces of a character that a
byte-level or byte-fallback tokenizer splits, such as an emoji) it keeps the last, the one at which the character is
complete. The rule is the one issue 25 proposes; Jiralerspong and Bricken's cross-architecture crosscoders (arXiv
2602.11729) pair the two models' tokens too, but their procedure could not be read here (no network), so this
module does not claim to follow it.

``AlignedHarvestingSource`` runs each model on its own tokens of the same texts and serves the aligned pairs as
``[n, 2, d_model]`` activations: an ``ActivationSource`` for the ``ShufflingBuffer`` and the ``Trainer``, like
``HarvestingSource``. It reports its *yield* (aligned pairs per token of the model with fewer tokens) and refuses to
go on when the yield of its first texts is below ``min_yield``: with tokenizers that rarely agree, the pairs would be
a biased sample of positions (word ends, punctuation) rather than the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..validation import non_empty, non_empty_strings, positive_int, real
from .buffer import BatchHarvester, model_label
from .data import SourceExhaustedError
from .models import check_hook_point
from .sites import run_to_site


class AlignmentError(ValueError):
    """Two tokenizations that line up too rarely to pair their models' activations, or a tokenizer without
    character offsets."""


def token_end_offsets(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """``(ids, ends)`` of ``text`` under a fast Hugging Face ``tokenizer``, without special tokens: the token ids, and
    for each token the character offset at which it ends."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not getattr(tokenizer, "is_fast", False):
        raise AlignmentError(f"{type(tokenizer).__name__} is not a fast tokenizer: aligning two tokenizations needs "
                             "the character offsets only fast tokenizers give (AutoTokenizer(..., use_fast=True))")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [end for _, end in encoding["offset_mapping"]]


def aligned_positions(ends_a: Sequence[int], ends_b: Sequence[int]) -> tuple[list[int], list[int]]:
    """Token indices ``(in_a, in_b)``, in text order, of the character offsets at which both tokenizations end a
    token, each the last token to end there (see the module docstring). ``ends_*``: per token, its end offset, in
    order (non-decreasing)."""
    for name, ends in (("ends_a", ends_a), ("ends_b", ends_b)):
        if any(later < earlier for earlier, later in zip(ends, ends[1:])):
            raise ValueError(f"{name} must be non-decreasing character offsets, got {list(ends)}")
    last_a = {end: index for index, end in enumerate(ends_a) if end > 0}
    last_b = {end: index for index, end in enumerate(ends_b) if end > 0}
    common = sorted(set(last_a) & set(last_b))
    return [last_a[end] for end in common], [last_b[end] for end in common]


def _with_bos(tokenizer, ids: list[int]) -> tuple[list[int], int]:
    """``ids`` with the tokenizer's BOS in front (when it has one), and the shift that puts on every position."""
    bos = tokenizer.bos_token_id
    return ([bos, *ids], 1) if bos is not None else (list(ids), 0)


def _check_one_per_model(models: list, tokenizers: list, hook_points: list[str]) -> None:
    for name, value in (("models", models), ("tokenizers", tokenizers), ("hook_points", hook_points)):
        if len(non_empty(name, value)) != 2:
            raise ValueError(f"{name} must hold one entry per model of the pair (2), got {len(value)}")


@dataclass
class AlignedTexts:
    """Texts read by both models, paired where their tokenizations line up.

    Attributes:
        activations: ``[n_pairs, 2, d_model]`` (float32, CPU), the texts' aligned pairs in order.
        token_rows: per model, per text, the token ids the model read (its BOS first, when it has one).
        positions: per model, per text, the aligned positions in that model's row (BOS counted), in text order:
            pair ``j`` of text ``t`` is ``positions[0][t][j]`` in model 0 and ``positions[1][t][j]`` in model 1.
    """

    activations: torch.Tensor
    token_rows: list[list[list[int]]]
    positions: list[list[list[int]]]


def _run_aligned(models: list, tokenizers: list, hook_points: list[str], encoded: list, pairs: list) -> AlignedTexts:
    """Run each model on its own tokens (``encoded[model][text] = (ids, ends)``) and gather the aligned
    ``pairs[text] = (in_a, in_b)``."""
    per_model, token_rows, positions = [], [], []
    for side, (model, tokenizer, hook_point) in enumerate(zip(models, tokenizers, hook_points)):
        rows = [_with_bos(tokenizer, ids) for ids, _ in encoded[side]]
        length = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        tokens = torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in rows])
        with torch.no_grad():
            acts = run_to_site(model, tokens, hook_point).float().cpu()
        token_rows.append([ids for ids, _ in rows])
        positions.append([[index + shift for index in pair[side]] for (_, shift), pair in zip(rows, pairs)])
        per_model.append(torch.cat([acts[row, torch.tensor(where, dtype=torch.long)]
                                    for row, where in enumerate(positions[-1])]))
    return AlignedTexts(torch.stack(per_model, dim=1), token_rows, positions)


def harvest_aligned_texts(models: list, tokenizers: list, texts: Sequence[str], hook_points: list[str]) -> AlignedTexts:
    """Run two models, each on its own tokenization of ``texts`` (one batch, right-padded), and pair their
    activations where the tokenizations line up (``aligned_positions``); see ``AlignedTexts``."""
    _check_one_per_model(models, tokenizers, hook_points)
    texts = non_empty_strings("texts", texts)
    for model, hook_point in zip(models, hook_points):
        check_hook_point(model, hook_point)
    encoded = [[token_end_offsets(tokenizer, text) for text in texts] for tokenizer in tokenizers]
    pairs = [aligned_positions(a[1], b[1]) for a, b in zip(*encoded)]
    return _run_aligned(models, tokenizers, hook_points, encoded, pairs)


class AlignedHarvestingSource(BatchHarvester):
    """Paired activations ``[n, 2, d_model]`` of two models that each read ``texts`` with their own tokenizer, at
    the positions where the tokenizations line up (``aligned_positions``); BOS is never served.

    ``models``, ``tokenizers``, ``hook_points``: one per model (the hook may differ between architectures); both
    sites must have the same width. ``texts``: the documents, served in order, each cut to its first ``max_chars``
    characters; ``texts_per_batch`` are run at a time (right-padded: the models are causal, so padding after a
    position cannot change it). ``min_yield``: the least yield over the first batch that is accepted.
    """

    def __init__(self, models: list, tokenizers: list, texts: Sequence[str], hook_points: list[str],
                 max_chars: int = 2_000, texts_per_batch: int = 16, min_yield: float = 0.5):
        _check_one_per_model(models, tokenizers, hook_points)
        self.texts = non_empty_strings("texts", texts)
        widths = [int(model.cfg.d_model) for model in models]
        if widths[0] != widths[1]:
            raise ValueError(f"the two sites have different widths ({widths[0]} and {widths[1]}); a crosscoder here "
                             "pairs activations of one width")
        for tokenizer in tokenizers:
            token_end_offsets(tokenizer, "a")  # a slow tokenizer fails here, before any model runs
        for model, hook_point in zip(models, hook_points):
            check_hook_point(model, hook_point)
        self.models, self.tokenizers, self.hook_points = models, tokenizers, hook_points
        self.max_chars = positive_int("max_chars", max_chars)
        self.texts_per_batch = positive_int("texts_per_batch", texts_per_batch)
        self.min_yield = real("min_yield", min_yield, 0, 1)
        self.next_text, self.tokens_harvested = 0, 0
        self.aligned, self.tokens_read = 0, 0
        self._pending, self._batch_start, self._batch_size = torch.empty(0), 0, 0

    @property
    def alignment_yield(self) -> float:
        """Aligned pairs per token of the model with fewer tokens, over every text read so far."""
        return self.aligned / max(1, self.tokens_read)

    def _harvest_batch(self) -> torch.Tensor:
        if self.next_text >= len(self.texts):
            raise SourceExhaustedError(f"all {len(self.texts)} texts were served")
        self._batch_start = self.next_text
        texts = [text[: self.max_chars] for text in self.texts[self.next_text: self.next_text + self.texts_per_batch]]
        self.next_text += len(texts)
        encoded = [[token_end_offsets(tokenizer, text) for text in texts] for tokenizer in self.tokenizers]
        pairs = [aligned_positions(a[1], b[1]) for a, b in zip(*encoded)]
        self.aligned += sum(len(in_a) for in_a, _ in pairs)
        self.tokens_read += sum(min(len(a[0]), len(b[0])) for a, b in zip(*encoded))
        if self._batch_start == 0 and self.alignment_yield < self.min_yield:
            raise AlignmentError(f"the two tokenizations line up at {self.alignment_yield:.1%} of the tokens of the "
                                 f"first {len(texts)} texts, below min_yield={self.min_yield:.0%}: too few pairs to "
                                 "train on (lower min_yield to accept them)")
        batch = _run_aligned(self.models, self.tokenizers, self.hook_points, encoded, pairs).activations
        self._batch_size = batch.shape[0]
        self.tokens_harvested += batch.shape[0]
        return batch

    def fingerprint(self) -> dict:
        """The models, their sites and the texts (hashed)."""
        digest = hashlib.sha256("\0".join(self.texts).encode()).hexdigest()[:16]
        hook_point = self.hook_points[0] if len(set(self.hook_points)) == 1 else list(self.hook_points)
        return {"models": [model_label(str(getattr(m.cfg, "model_name", type(m).__name__))) for m in self.models],
                "hook_point": hook_point, "d_model": int(self.models[0].cfg.d_model),
                "texts": {"n": len(self.texts), "sha256": digest, "max_chars": self.max_chars}, "aligned": True}

    def state_dict(self) -> dict:
        """Where the pending pairs' batch started and how many of them were already served."""
        pending = self._pending.shape[0]
        return {"next_text": self._batch_start if pending else self.next_text,
                "skip": self._batch_size - pending if pending else 0, "tokens_harvested": self.tokens_harvested}

    def load_state_dict(self, state: dict) -> None:
        """Rewind to a state; re-harvest a partly served batch and drop what was served of it."""
        self.next_text, self._pending = int(state["next_text"]), torch.empty(0)
        skip = int(state["skip"])
        if skip:
            self._pending = self._harvest_batch()[skip:]
        self.tokens_harvested = int(state["tokens_harvested"])


@torch.no_grad()
def last_token_pairs(models: list, tokenizers: list, texts: Sequence[str], hook_points: list[str]) -> torch.Tensor:
    """Each model's activation at the last token of each text, ``[n_texts, 2, d_model]`` (float32): both
    tokenizations end there, so the pair is always aligned (a prompt that ends at ``Assistant:`` gives the response
    position). Each model reads its tokenizer's BOS first."""
    texts = non_empty_strings("texts", texts)
    _check_one_per_model(models, tokenizers, hook_points)
    per_model = []
    for model, tokenizer, hook_point in zip(models, tokenizers, hook_points):
        check_hook_point(model, hook_point)
        rows = [_with_bos(tokenizer, token_end_offsets(tokenizer, text)[0])[0] for text in texts]
        per_model.append(torch.stack([run_to_site(model, torch.tensor([ids]), hook_point)[0, -1].float().cpu()
                                      for ids in rows]))
    return torch.stack(per_model, dim=1)


def alignment_report(tokenizers: list, texts: Sequence[str]) -> dict[str, float]:
    """How two tokenizers line up on ``texts``: the aligned positions, each tokenizer's token count, and the yield
    per token of the coarser one and of the finer one (no model runs)."""
    if len(non_empty("tokenizers", tokenizers)) != 2:
        raise ValueError(f"tokenizers must hold the pair's two tokenizers, got {len(tokenizers)}")
    texts = non_empty("texts", texts)
    aligned, counts = 0, [0, 0]
    for text in texts:
        (ids_a, ends_a), (ids_b, ends_b) = (token_end_offsets(tokenizer, text) for tokenizer in tokenizers)
        aligned += len(aligned_positions(ends_a, ends_b)[0])
        counts[0], counts[1] = counts[0] + len(ids_a), counts[1] + len(ids_b)
    return {"texts": len(texts), "aligned": aligned, "tokens_a": counts[0], "tokens_b": counts[1],
            "yield_coarser": aligned / max(1, min(counts)), "yield_finer": aligned / max(1, max(counts))}
