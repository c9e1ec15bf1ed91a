"""Reading a fine-tune from *unrelated* text: the methods of the narrow-fine-tuning literature, side by side.

Minder et al. (arXiv 2510.13900) read a narrow fine-tune from the activation differences on the first tokens of
ordinary documents. ``read_fine_tune`` runs, on one pair (base first, the fine-tune second), every reader of that
kind here, each as a list of *items* a reader scans in order, each shown by the ``TOP_TOKENS`` tokens it surfaces:

- ``ADL logit lens``: the mean difference at each of the first positions, through the fine-tune's logit lens
  (``difference_lens``; the middle layer, document starts);
- ``ADL Patchscope``: the same differences, read by the fine-tune's token-identity Patchscope (``patchscope``);
- ``logit-diff mining``: the tokens most often among each position's top ``chat - base`` logit differences over
  the same documents (``logit_mining``), read ``TOP_TOKENS`` at a time;
- ``logit-diff mining, prompts``: the same over chat prompts (what a user asks, not what the fine-tune saw);
- ``PCA logit lens``: the principal components of the differences (``difference_pca``), both signs.

``read_dictionaries`` adds notebook 08's two dictionaries, read without labelled prompts (``DICTIONARY_READERS``):

- ``crosscoder``: the latents in order of relative decoder norm (the fine-tune's share, largest first), each shown
  by the tokens its fine-tune decoder vector promotes through the fine-tune's logit lens;
- ``diff-SAE``: the latents in order of mean activation on the ``fine-tune - chat`` differences over the same
  document starts (the toolkit's ranking of ``sae_difference`` latents), shown the same way.

The grader is the scoreboard's (no LLM): an item *names* an organism when at least ``TOKEN_QUORUM`` of its tokens
are the organism's distinctive tokens (``scoreboard.distinctive_token_sets``), here only those with at least
``MIN_LETTERS`` letters or digits (word pieces such as ``ho`` or ``ul`` of a long signature, which every token soup
holds, named the taboo organism in a first run); ``reading_board`` gives, per organism and method, the rank of the
first item that names it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..activations.models import ModelPair
from ..activations.sites import harvest
from ..analysis.behaviour import greedy_continuations
from ..crosscoder.model import CrossCoder
from ..validation import instance, non_empty_strings, positive_int, real
from .difference_lens import activation_difference_lens, document_starts, lens_probabilities
from .difference_pca import difference_pca
from .logit_mining import logit_diff_mining
from .patchscope import patchscope
from .scoreboard import TOKEN_QUORUM, TOP_TOKENS, distinctive_token_sets

MIN_LETTERS = 3
READERS = ("ADL logit lens", "ADL Patchscope", "logit-diff mining", "logit-diff mining, prompts", "PCA logit lens")
DICTIONARY_READERS = ("crosscoder", "diff-SAE")


@dataclass
class Reading:
    """One method's items on one pair: ``tokens[i]``, the token ids item ``i`` surfaces (in the reader's order), and
    the method's compute in ``seconds``."""

    method: str
    tokens: list[list[int]]
    seconds: float


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[start:start + size] for start in range(0, len(ids), size)]


@torch.no_grad()
def read_fine_tune(pair: ModelPair, documents: Sequence[str], prompts: Sequence[str], n_positions: int = 5,
                   n_components: int = 8, hook_point: str | None = None) -> list[Reading]:
    """Every reader of ``READERS`` on ``pair``: the ADL and the mining over the starts (``n_positions`` tokens, BOS
    first) of ``documents``, the prompt mining over ``prompts``, PCA over the document starts; ``hook_point``
    (default: the middle layer) is the site of the ADL, Patchscope and PCA."""
    instance("pair", pair, ModelPair)
    documents, prompts = non_empty_strings("documents", documents), non_empty_strings("prompts", prompts)
    positive_int("n_positions", n_positions, minimum=2)
    tokenizer, chat = pair.tokenizer, pair.models[-1]
    starts = document_starts(tokenizer, documents, n_positions).to(pair.device)
    batches = list(starts.split(64))
    readings = []

    started = time.perf_counter()
    lens = activation_difference_lens(pair, batches, n_positions, hook_point, progress=False)
    differences = lens.mean_difference[1:]  # position 0 is BOS
    lens_seconds = time.perf_counter() - started
    readings.append(Reading(READERS[0], [lens_probabilities(chat, v)[0].topk(TOP_TOKENS).indices.tolist()
                                         for v in differences], time.perf_counter() - started))
    started = time.perf_counter()
    scoped = patchscope(chat, tokenizer, differences, lens.hook_point)
    readings.append(Reading(READERS[1], scoped.topk(TOP_TOKENS, dim=-1).indices.tolist(),
                            time.perf_counter() - started + lens_seconds))
    started = time.perf_counter()
    mined = logit_diff_mining(pair, batches, top_k=TOP_TOKENS, n=10 * TOP_TOKENS, progress=False)
    readings.append(Reading(READERS[2], _chunks(mined["token_id"].tolist(), TOP_TOKENS), time.perf_counter() - started))
    started = time.perf_counter()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [[tokenizer.bos_token_id, *ids] for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    padded = torch.tensor([row + [pad] * (max(map(len, rows)) - len(row)) for row in rows], device=pair.device)
    mined = logit_diff_mining(pair, padded.split(64), top_k=TOP_TOKENS, n=10 * TOP_TOKENS, pad_id=pad,
                              progress=False)
    readings.append(Reading(READERS[3], _chunks(mined["token_id"].tolist(), TOP_TOKENS), time.perf_counter() - started))
    started = time.perf_counter()
    pca = difference_pca(pair, batches, n_components, lens.hook_point, progress=False)
    items = []
    for component in pca.components:
        both = lens_probabilities(chat, component).topk(TOP_TOKENS, dim=-1).indices.tolist()
        items += both  # +c, then -c
    readings.append(Reading(READERS[4], items, time.perf_counter() - started))
    return readings


def _lens_tokens(model, vectors: torch.Tensor) -> list[list[int]]:
    """The ``TOP_TOKENS`` tokens each of ``vectors [n, d_model]`` promotes through ``model``'s logit lens."""
    return [lens_probabilities(model, vector)[0].topk(TOP_TOKENS).indices.tolist() for vector in vectors]


@torch.no_grad()
def read_dictionaries(pair: ModelPair, crosscoder: CrossCoder, diff_sae: CrossCoder, documents: Sequence[str],
                      n_positions: int = 5, scan_limit: int = 50) -> list[Reading]:
    """``DICTIONARY_READERS`` on ``pair`` (base first, the fine-tune second): the first ``scan_limit`` latents of
    ``crosscoder`` (two models) by relative decoder norm, and of ``diff_sae`` (one model, the difference) by mean
    activation over the starts (``n_positions`` tokens, BOS first, BOS not counted) of ``documents``, each at its
    own hook point; every latent shown by its fine-tune decoder vector through the fine-tune's logit lens."""
    from ..analysis.norms import relative_norms

    instance("pair", pair, ModelPair)
    instance("crosscoder", crosscoder, CrossCoder)
    instance("diff_sae", diff_sae, CrossCoder)
    documents = non_empty_strings("documents", documents)
    positive_int("n_positions", n_positions, minimum=2)
    positive_int("scan_limit", scan_limit)
    d_model = int(pair.models[-1].cfg.d_model)
    for name, dictionary, n_models in (("crosscoder", crosscoder, 2), ("diff_sae", diff_sae, 1)):
        if dictionary.cfg.n_models != n_models or dictionary.cfg.d_model != d_model:
            raise ValueError(f"{name} must read {n_models} model(s) of d_model {d_model}, got n_models "
                             f"{dictionary.cfg.n_models} and d_model {dictionary.cfg.d_model}")
    fine_tune = pair.models[-1]
    started = time.perf_counter()
    order = relative_norms(crosscoder).nan_to_num(-1.0).argsort(descending=True)[:scan_limit]
    vectors = crosscoder.decoder_vectors(normalized=False)[order, 1]
    readings = [Reading(DICTIONARY_READERS[0], _lens_tokens(fine_tune, vectors), time.perf_counter() - started)]
    started = time.perf_counter()
    starts = document_starts(pair.tokenizer, documents, n_positions).to(pair.device)
    activations = torch.cat([harvest(pair.models, batch, diff_sae.cfg.hook_point)[:, 1:] for batch in starts.split(64)])
    differences = (activations[:, :, 1] - activations[:, :, 0]).flatten(0, 1).float()  # [documents x positions, d]
    codes = diff_sae.encode(differences[:, None].to(diff_sae.W_enc.device))
    order = codes.mean(0).argsort(descending=True)[:scan_limit]
    vectors = diff_sae.decoder_vectors(normalized=False)[order, 0]
    readings.append(Reading(DICTIONARY_READERS[1], _lens_tokens(fine_tune, vectors), time.perf_counter() - started))
    return readings


def reading_board(readings: dict[str, list[Reading]], tokenizer, organisms: dict[str, object]):
    """Per organism (``organisms``: name -> an organism with ``name`` and ``signature``, whose pair's readings are
    ``readings[name]``) and method: ``rank`` (1-based) of the first item naming the organism (``None``: none does),
    that item's tokens (``view``), and ``seconds``. A pandas DataFrame, one row per organism x method."""
    import pandas as pd

    if not isinstance(readings, dict) or not readings or set(readings) != set(organisms):
        raise ValueError(f"readings and organisms must name the same organisms, got {sorted(readings)} and "
                         f"{sorted(organisms)}")
    distinctive = {name: {t for t in ids if sum(c.isalnum() for c in tokenizer.decode([t])) >= MIN_LETTERS}
                   for name, ids in distinctive_token_sets(tokenizer, list(organisms.values())).items()}
    rows = []
    for name, methods in readings.items():
        for reading in methods:
            rank, view = None, ""
            for index, ids in enumerate(reading.tokens):
                if len(set(ids) & distinctive[name]) >= TOKEN_QUORUM:
                    rank, view = index + 1, " ".join(tokenizer.convert_ids_to_tokens(ids))
                    break
            rows.append({"organism": name, "method": reading.method, "rank": rank, "view": view,
                         "items": len(reading.tokens), "seconds": round(reading.seconds, 2)})
    return pd.DataFrame(rows)


@torch.no_grad()
def steered_behaviour(pair: ModelPair, lens, organism, prompts: Sequence[str], positions: Sequence[int],
                      scale: float = 1.0, max_new_tokens: int = 24):
    """Steering with the ADL (the paper's third reading): the pair's first model (for a narrow pair, the chat model
    before the fine-tune) with the mean difference at each of ``positions`` of ``lens`` (a ``DifferenceLens``) added
    at its site, rescaled to ``scale`` times the mean norm of that model's activations there over ``prompts``;
    greedy continuations of ``prompts``. A pandas DataFrame per position: the share of continuations that show
    ``organism``'s behaviour (``organism.shows``) and the first continuation."""
    import pandas as pd

    prompts = non_empty_strings("prompts", prompts)
    instance("pair", pair, ModelPair)
    real("scale", scale, 0, low_open=True)
    positive_int("max_new_tokens", max_new_tokens)
    if not callable(getattr(organism, "shows", None)):
        raise TypeError(f"organism must have a shows(continuation) method, got {type(organism).__name__}")
    tokenizer = pair.tokenizer
    ids = [[tokenizer.bos_token_id, *row] for row in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    norms = torch.cat([harvest(pair.models[:1], torch.tensor([row], device=pair.device), lens.hook_point)[0, 1:, 0]
                       .float().norm(dim=-1) for row in ids])
    site_norm = float(norms.mean())
    rows = []
    for position in positions:
        positive_int("position", position, maximum=lens.mean_difference.shape[0] - 1)
        vector = lens.mean_difference[position].float()
        strength = scale * site_norm / float(vector.norm())
        texts = greedy_continuations(lens.steering_fn(pair, position, strength), tokenizer, prompts, max_new_tokens,
                                     device=str(pair.device))
        rows.append({"position": position, "strength": round(strength, 2),
                     "shows the behaviour": sum(map(organism.shows, texts)) / len(texts),
                     "first continuation": texts[0].strip().splitlines()[0] if texts[0].strip() else ""})
    return pd.DataFrame(rows)
