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

from ..activations.data import prompts_by_length
from ..activations.diff import check_compatible
from ..activations.models import ModelPair, check_hook_point
from ..activations.runs import EditedRun
from ..activations.sites import kl_divergence, log_probs
from ..analysis.behaviour import greedy_continuations
from ..analysis.detection import auroc
from ..crosscoder.model import CrossCoder
from ..toy.organisms import ORGANISMS, Organism, OrganismPrompt, organism_dialogues
from ..validation import real
from .difference_lens import activation_difference_lens, lens_probabilities

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


@dataclass
class PromptPass:
    """What one forward pass of each model over the labelled prompts gives every method: ``activations`` per hook
    point (``{hook: [n, n_models, d_model]}`` at the last prompt token, float32) and ``kl [n]``, ``KL(chat || base)``
    of the next token after each prompt (``helpers.methods.token_divergence.prompt_kl``)."""

    activations: dict[str, torch.Tensor]
    kl: torch.Tensor
    seconds: float


@torch.no_grad()
def prompt_pass(pair: ModelPair, prompts: Sequence[OrganismPrompt], hook_points: Sequence[str]) -> PromptPass:
    """Each model once over ``prompts`` (equal lengths batched, no padding), keeping the last token's activation
    at each of ``hook_points`` and the last position's logits for the KL."""
    started = time.perf_counter()
    hook_points = sorted(set(hook_points))
    texts = [p.prompt for p in prompts]
    activations = {hook: torch.zeros(len(texts), len(pair.models), pair.d_model) for hook in hook_points}
    kl = torch.zeros(len(texts))
    for indices, tokens in prompts_by_length(pair.tokenizer, texts, pair.device):
        last = []
        for m, model in enumerate(pair.models):
            logits, cache = model.run_with_cache(tokens, names_filter=hook_points)
            for hook in hook_points:
                activations[hook][indices, m] = cache[hook][:, -1].float().cpu()
            last.append(log_probs(logits[:, -1:]))
        kl[indices] = kl_divergence(last[1], last[0])[:, 0].float().cpu()
    return PromptPass(activations, kl, time.perf_counter() - started)


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


def crosscoder_output(crosscoder: CrossCoder, prompts: Sequence[OrganismPrompt], method: str, shared: PromptPass,
                      scan_limit: int = 50) -> MethodOutput:
    """A crosscoder read the usual way: latents from the most chat-specific decoder (relative norm, largest
    first), each shown by its top prompts; scored by activation at the response position (from ``shared``, the
    pass over the prompts; ``seconds`` counts the encoding plus that pass)."""
    from ..analysis.norms import relative_norms

    started = time.perf_counter()
    with torch.no_grad():
        acts = shared.activations[crosscoder.cfg.hook_point]
        scores = crosscoder.encode(acts.to(crosscoder.W_enc.device)).float().cpu()
    order = relative_norms(crosscoder).argsort(descending=True).tolist()
    return latent_method(method, scores, order, prompts, time.perf_counter() - started + shared.seconds, scan_limit)


def diff_sae_output(sae: CrossCoder, prompts: Sequence[OrganismPrompt], shared: PromptPass, scan_limit: int = 50,
                    method: str = "diff-SAE") -> MethodOutput:
    """A diff-SAE read the way its latents are usually ranked: by mean activation over the prompts (labels
    unused), each shown by its top prompts; scored by activation on ``chat - base`` at the response position."""
    started = time.perf_counter()
    acts = shared.activations[sae.cfg.hook_point]
    with torch.no_grad():
        scores = sae.encode((acts[:, 1:2] - acts[:, 0:1]).to(sae.W_enc.device)).float().cpu()
    order = scores.mean(0).argsort(descending=True).tolist()
    return latent_method(method, scores, order, prompts, time.perf_counter() - started + shared.seconds, scan_limit)


def distinctive_tokens(tokenizer, organism: Organism, max_share: float = 0.01) -> set[int]:
    """Token ids of the organism's behaviour and trigger text that appear in at most ``max_share`` of the
    ordinary (organism-free) training answers: what a reader could recognise the organism by."""
    return distinctive_token_sets(tokenizer, [organism], max_share)[organism.name]


def distinctive_token_sets(tokenizer, organisms: Sequence[Organism], max_share: float = 0.01) -> dict[str, set[int]]:
    """``distinctive_tokens`` of each organism, the ordinary answers tokenised once for all of them."""
    ordinary = [q.answer for name, q in organism_dialogues("train") if name is None]
    encoded = tokenizer([f" {a}" for a in ordinary], add_special_tokens=False)["input_ids"]
    share = Counter(t for ids in encoded for t in set(ids))
    result = {}
    for organism in organisms:
        own = tokenizer(f" {organism.signature}", add_special_tokens=False)["input_ids"]
        result[organism.name] = {t for t in own if share[t] <= max_share * len(ordinary)}
    return result


def lens_output(pair: ModelPair, token_batches: Iterable[torch.Tensor], prompts: Sequence[OrganismPrompt],
                shared: PromptPass, n_positions: int = 8, method: str = "ADL logit lens") -> MethodOutput:
    """The Activation Difference Lens of ordinary text ``token_batches`` (``[batch, seq]``, BOS first) at the
    pair's hook point: one item per position (in order), shown by the chat model's logit lens of the mean
    difference there; scored by the cosine of each prompt's ``chat - base`` at its response position (from
    ``shared``) with that difference."""
    started = time.perf_counter()
    lens = activation_difference_lens(pair, token_batches, n_positions, pair.hook_point, progress=False)
    acts = shared.activations[lens.hook_point]
    difference = acts[:, 1] - acts[:, 0]
    scores = torch.nn.functional.cosine_similarity(difference[:, None], lens.mean_difference[None].float(), dim=-1)
    tokens = distinctive_token_sets(pair.tokenizer, ORGANISMS)
    views, names = [], []
    for position in range(lens.mean_difference.shape[0]):
        top = lens_probabilities(pair.models[-1], lens.mean_difference[position])[0].topk(TOP_TOKENS).indices.tolist()
        views.append(" ".join(pair.tokenizer.convert_ids_to_tokens(top)))
        hits = {name: len(set(top) & ids) for name, ids in tokens.items()}
        best = max(hits, key=hits.get)  # type: ignore[arg-type]
        names.append(best if hits[best] >= TOKEN_QUORUM else None)
    order = list(range(len(views)))
    return MethodOutput(method, scores, order, views, names, time.perf_counter() - started + shared.seconds)


def kl_output(pair: ModelPair, prompts: Sequence[OrganismPrompt], shared: PromptPass, scan_limit: int = 50,
              chat_continuations: Sequence[str] | None = None, method: str = "per-token KL") -> MethodOutput:
    """Per-token KL after ``Assistant:`` (from ``shared``): a single score per prompt; the reader scans the prompts
    by KL (largest first), each shown with the chat model's greedy continuation, which names the organism it
    shows. ``chat_continuations`` (one per prompt, e.g. those the organism rates were measured on) are reused;
    without them the scanned prompts' 32-token continuations are generated."""
    started = time.perf_counter()
    kl = shared.kl
    order = kl.argsort(descending=True).tolist()[:scan_limit]
    if chat_continuations is None:
        generated = greedy_continuations(EditedRun(pair.models, len(pair.models) - 1), pair.tokenizer,
                                         [prompts[i].prompt for i in order], 32, device=str(pair.device))
    elif len(chat_continuations) != len(prompts):
        raise ValueError(f"chat_continuations must hold one continuation per prompt ({len(prompts)}), got "
                         f"{len(chat_continuations)}")
    else:
        generated = [chat_continuations[i] for i in order]
    views: list = [None] * len(prompts)
    names: list = [None] * len(prompts)
    for i, text in zip(order, generated):
        views[i] = f"{_short(prompts[i].prompt)} -> {text.strip()}"
        names[i] = next((o.name for o in ORGANISMS if o.shows(text)), None)
    return MethodOutput(method, kl[:, None], order, views, names, time.perf_counter() - started + shared.seconds)


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
                diff_sae: CrossCoder, lens_sequences: int = 256, scan_limit: int = 50,
                chat_continuations: Sequence[str] | None = None) -> list[MethodOutput]:
    """Every method of the scoreboard on ``prompts``: each crosscoder (by name), the diff-SAE, the Activation
    Difference Lens of ``lens_sequences`` rows of ordinary text (the toy corpus's stdlib source, never a
    dialogue) and per-token KL, all fed by one forward pass of each model over the prompts (``prompt_pass``;
    each method's ``seconds`` includes it). ``chat_continuations``: see ``kl_output``."""
    from ..activations.data import ToyTokenSource

    for crosscoder in crosscoders.values():
        check_compatible(crosscoder, pair)
    check_hook_point(pair.models[0], diff_sae.cfg.hook_point)
    if chat_continuations is not None and len(chat_continuations) != len(prompts):
        raise ValueError(f"chat_continuations must hold one continuation per prompt ({len(prompts)}), got "
                         f"{len(chat_continuations)}")
    shared = prompt_pass(pair, prompts, [pair.hook_point, diff_sae.cfg.hook_point,
                                         *(c.cfg.hook_point for c in crosscoders.values())])
    text = ToyTokenSource(pair.tokenizer, seq_len=16, seed=1, chat_fraction=0.0).next_batch(lens_sequences)
    batches = [row.to(pair.device) for row in text.split(64)]
    return [*(crosscoder_output(c, prompts, name, shared, scan_limit) for name, c in crosscoders.items()),
            diff_sae_output(diff_sae, prompts, shared, scan_limit),
            lens_output(pair, batches, prompts, shared),
            kl_output(pair, prompts, shared, scan_limit, chat_continuations)]


def train_seconds(folder: Path) -> float | None:
    """The training time a packaged dictionary recorded in its ``cfg.json`` (``extra.final_metrics.seconds``)."""
    cfg = json.loads((Path(folder) / "cfg.json").read_text())
    return cfg.get("extra", {}).get("final_metrics", {}).get("seconds")
