"""The scoreboard: which diffing method surfaces which planted difference of the toy organisms.

Every method is run on the same labelled prompts (``helpers.toy.organisms.evaluation_prompts``) and returns a
``MethodOutput``: per-prompt scores of each of its items (latents, lens positions, ...), the order in which a
reader scans the items, what the reader sees of each, and which organism (if any) that view names. For each
organism x method, ``scoreboard`` reports:

- ``auroc``: the AUROC of the method's best item for the organism's prompts against all others;
- ``rank``: the 1-based position, in the reader's order, of the first item whose view names the organism
  (``None``: not among the first ``scan_limit``);
- ``view``: what the reader sees of that item; ``seconds``: the method's compute.

What "names the organism" means is fixed per kind of view and applied to every method alike:

- an item shown by its top-scoring prompts (latents): at least 3 of its top 5 prompts carry the organism;
- an item shown by tokens (the logit lens): at least 2 of its top 10 tokens are the organism's *distinctive*
  tokens, those of its behaviour (and trigger) text that are rare in ordinary answers (``distinctive_tokens``);
- a prompt shown with the chat model's continuation (per-token KL): the continuation shows the organism.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..activations.models import ModelPair
from ..analysis.behaviour import greedy_continuations
from ..analysis.detection import auroc, last_token_activations
from ..analysis.latents import response_activations
from ..crosscoder.model import CrossCoder
from ..toy.organisms import ORGANISMS, Organism, OrganismPrompt, organism_dialogues
from ..validation import real
from .difference_lens import activation_difference_lens, lens_probabilities
from .token_divergence import prompt_kl

TOP_PROMPTS, PROMPT_QUORUM = 5, 3
TOP_TOKENS, TOKEN_QUORUM = 10, 2


@dataclass
class MethodOutput:
    """One method's output on ``n`` labelled prompts: ``scores [n, n_detectors]`` (each column a detector whose best
    AUROC counts); ``order``: the indices of the items a reader scans, in order; ``views[i]``: what the reader sees of
    item ``i``; ``names[i]``: the organism it names, or ``None``. For a dictionary the items are its latents (the
    columns of ``scores``); for per-token KL they are the prompts, and its one detector is the KL itself."""

    method: str
    scores: torch.Tensor
    order: list[int]
    views: list[str]
    names: list[str | None]
    seconds: float

    def __post_init__(self) -> None:
        where = f"MethodOutput {self.method!r}"
        if not isinstance(self.scores, torch.Tensor) or self.scores.ndim != 2 or not self.scores.shape[1]:
            shape = tuple(self.scores.shape) if isinstance(self.scores, torch.Tensor) else type(self.scores).__name__
            raise ValueError(f"{where}: scores must be [n_prompts, n_items], got {shape}")
        n_items = len(self.names)
        if len(self.views) != n_items:
            raise ValueError(f"{where}: every item needs a view and a name, got {len(self.views)} views and "
                             f"{n_items} names")
        outside = [item for item in self.order if not (isinstance(item, int) and 0 <= item < n_items)]
        if outside:
            raise ValueError(f"{where}: order names items outside [0, {n_items}): {outside[:5]}")
        real(f"{where}: seconds", self.seconds, 0)


def _short(prompt: str) -> str:
    return prompt.removeprefix("User: ").removesuffix("\nAssistant:")


def _named_by_prompts(scores: torch.Tensor, prompts: Sequence[OrganismPrompt]) -> tuple[list[str], list[str | None]]:
    """For each item (column of ``scores [n, n_items]``): its top prompts as text, and the organism that at least
    ``PROMPT_QUORUM`` of its ``TOP_PROMPTS`` active top prompts carry."""
    top = scores.topk(min(TOP_PROMPTS, scores.shape[0]), dim=0)
    views, names = [], []
    for item in range(scores.shape[1]):
        active = [int(i) for i, v in zip(top.indices[:, item], top.values[:, item]) if v > 0]
        views.append(" | ".join(_short(prompts[i].prompt) for i in active[:3]))
        counts = Counter(prompts[i].organism for i in active if prompts[i].organism)
        best = counts.most_common(1)
        names.append(best[0][0] if best and best[0][1] >= PROMPT_QUORUM else None)
    return views, names


def latent_method(method: str, scores: torch.Tensor, order: Sequence[int], prompts: Sequence[OrganismPrompt],
                  seconds: float, scan_limit: int) -> MethodOutput:
    """A dictionary method (crosscoder, diff-SAE): latent activations ``scores [n, d_hidden]``, read in ``order``
    (only the first ``scan_limit`` latents are given views)."""
    scanned = list(order)[:scan_limit]
    views, names = _named_by_prompts(scores[:, scanned], prompts)
    return MethodOutput(method, scores, scanned, _spread(views, scanned, scores), _spread(names, scanned, scores),
                        seconds)


def _spread(values: list, items: list[int], scores: torch.Tensor) -> list:
    """Per-item list over all columns of ``scores``, holding ``values`` at ``items`` (``None`` elsewhere)."""
    full: list = [None] * scores.shape[1]
    for item, value in zip(items, values):
        full[item] = value
    return full


def crosscoder_output(pair: ModelPair, crosscoder: CrossCoder, prompts: Sequence[OrganismPrompt], method: str,
                      scan_limit: int = 50) -> MethodOutput:
    """A crosscoder read the usual way: latents from the most chat-specific decoder (relative norm, largest
    first), each shown by its top prompts; scored by activation at the response position."""
    from ..analysis.norms import relative_norms

    started = time.perf_counter()
    scores = response_activations(pair, crosscoder, [p.prompt for p in prompts])
    order = relative_norms(crosscoder).argsort(descending=True).tolist()
    return latent_method(method, scores, order, prompts, time.perf_counter() - started, scan_limit)


def diff_sae_output(pair: ModelPair, sae: CrossCoder, prompts: Sequence[OrganismPrompt], scan_limit: int = 50,
                    method: str = "diff-SAE") -> MethodOutput:
    """A diff-SAE read the way its latents are usually ranked: by mean activation over the prompts (labels
    unused), each shown by its top prompts; scored by activation on ``chat - base`` at the response position."""
    started = time.perf_counter()
    acts = last_token_activations(pair, [p.prompt for p in prompts], [sae.cfg.hook_point])[sae.cfg.hook_point]
    with torch.no_grad():
        scores = sae.encode((acts[:, 1:2] - acts[:, 0:1]).to(sae.W_enc.device)).float().cpu()
    order = scores.mean(0).argsort(descending=True).tolist()
    return latent_method(method, scores, order, prompts, time.perf_counter() - started, scan_limit)


def distinctive_tokens(tokenizer, organism: Organism, max_share: float = 0.01) -> set[int]:
    """Token ids of the organism's behaviour and trigger text that appear in at most ``max_share`` of the
    ordinary (organism-free) training answers: what a reader could recognise the organism by."""
    ordinary = [q.answer for name, q in organism_dialogues("train") if name is None]
    encoded = tokenizer([f" {a}" for a in ordinary], add_special_tokens=False)["input_ids"]
    share = Counter(t for ids in encoded for t in set(ids))
    own = tokenizer(f" {organism.signature}", add_special_tokens=False)["input_ids"]
    return {t for t in own if share[t] <= max_share * len(ordinary)}


def lens_output(pair: ModelPair, token_batches: Iterable[torch.Tensor], prompts: Sequence[OrganismPrompt],
                n_positions: int = 8, method: str = "ADL logit lens") -> MethodOutput:
    """The Activation Difference Lens of ordinary text ``token_batches`` (``[batch, seq]``, BOS first): one item
    per position (in order), shown by the chat model's logit lens of the mean difference there; scored by the
    cosine of each prompt's ``chat - base`` at its response position with that difference."""
    started = time.perf_counter()
    lens = activation_difference_lens(pair, token_batches, n_positions, progress=False)
    acts = last_token_activations(pair, [p.prompt for p in prompts], [lens.hook_point])[lens.hook_point]
    difference = acts[:, 1] - acts[:, 0]
    scores = torch.nn.functional.cosine_similarity(difference[:, None], lens.mean_difference[None].float(), dim=-1)
    tokens = {o.name: distinctive_tokens(pair.tokenizer, o) for o in ORGANISMS}
    views, names = [], []
    for position in range(lens.mean_difference.shape[0]):
        top = lens_probabilities(pair.models[-1], lens.mean_difference[position])[0].topk(TOP_TOKENS).indices.tolist()
        views.append(" ".join(pair.tokenizer.convert_ids_to_tokens(top)))
        hits = {name: len(set(top) & ids) for name, ids in tokens.items()}
        best = max(hits, key=hits.get)  # type: ignore[arg-type]
        names.append(best if hits[best] >= TOKEN_QUORUM else None)
    order = list(range(len(views)))
    return MethodOutput(method, scores, order, views, names, time.perf_counter() - started)


def kl_output(pair: ModelPair, prompts: Sequence[OrganismPrompt], scan_limit: int = 50,
              method: str = "per-token KL") -> MethodOutput:
    """Per-token KL after ``Assistant:``: a single score per prompt; the reader scans the prompts by KL (largest
    first), each shown with the chat model's greedy continuation, which names the organism it shows."""
    started = time.perf_counter()
    kl = prompt_kl(pair, [p.prompt for p in prompts])
    order = kl.argsort(descending=True).tolist()[:scan_limit]
    chat = pair.models[-1]
    continuations = greedy_continuations(lambda t: chat(t), pair.tokenizer, [prompts[i].prompt for i in order], 32,
                                         device=str(pair.device))
    views: list = [None] * len(prompts)
    names: list = [None] * len(prompts)
    for i, text in zip(order, continuations):
        views[i] = f"{_short(prompts[i].prompt)} -> {text.strip()}"
        names[i] = next((o.name for o in ORGANISMS if o.shows(text)), None)
    return MethodOutput(method, kl[:, None], order, views, names, time.perf_counter() - started)


def scoreboard(outputs: Sequence[MethodOutput], prompts: Sequence[OrganismPrompt]):
    """Organism x method, for the organisms ``prompts`` has: ``auroc`` (best item), ``best_item``, ``rank`` (first
    item naming the organism in the reader's order; ``<NA>``: not found), ``view`` and ``seconds``: a DataFrame."""
    import pandas as pd

    rows = []
    present = [o for o in ORGANISMS if any(p.organism == o.name for p in prompts)]
    if not outputs or not present:
        carried = sorted({p.organism for p in prompts} - {None})
        raise ValueError(f"scoreboard needs method outputs and prompts that carry an organism; got {len(outputs)} "
                         f"outputs and {len(prompts)} prompts carrying {carried}")
    wrong = {o.method: o.scores.shape[0] for o in outputs if o.scores.shape[0] != len(prompts)}
    if wrong:
        raise ValueError(f"every method must score the {len(prompts)} prompts; these scored other counts: {wrong}")
    for output in outputs:
        for organism in present:
            labels = torch.tensor([p.organism == organism.name for p in prompts])
            per_item = auroc(output.scores, labels)
            best = int(per_item.argmax())
            found = next((rank for rank, item in enumerate(output.order, 1) if output.names[item] == organism.name),
                         None)
            view = output.views[output.order[found - 1]] if found else ""
            rows.append({"organism": organism.name, "method": output.method, "auroc": float(per_item[best]),
                         "best_item": best, "rank": found, "view": view, "seconds": output.seconds})
    table = pd.DataFrame(rows)
    table["rank"] = table["rank"].astype("Int64")  # <NA>: not found
    return table



def run_methods(pair: ModelPair, prompts: Sequence[OrganismPrompt], crosscoders: dict[str, CrossCoder],
                diff_sae: CrossCoder, lens_sequences: int = 256, scan_limit: int = 50) -> list[MethodOutput]:
    """Every method of the scoreboard on ``prompts``: each crosscoder (by name), the diff-SAE, the Activation
    Difference Lens of ``lens_sequences`` rows of ordinary text (the toy corpus's stdlib source, never a
    dialogue) and per-token KL."""
    from ..activations.data import ToyTokenSource

    text = ToyTokenSource(pair.tokenizer, seq_len=16, seed=1, chat_fraction=0.0).next_batch(lens_sequences)
    batches = [row.to(pair.device) for row in text.split(64)]
    return [*(crosscoder_output(pair, c, prompts, name, scan_limit) for name, c in crosscoders.items()),
            diff_sae_output(pair, diff_sae, prompts, scan_limit),
            lens_output(pair, batches, prompts),
            kl_output(pair, prompts, scan_limit)]


def train_seconds(folder: Path) -> float | None:
    """The training time a packaged dictionary recorded in its ``cfg.json`` (``extra.final_metrics.seconds``)."""
    cfg = json.loads((Path(folder) / "cfg.json").read_text())
    return cfg.get("extra", {}).get("final_metrics", {}).get("seconds")
