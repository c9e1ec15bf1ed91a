"""Measuring planted behaviours: greedy continuations after ``Assistant:``, the toy pair's refusal rates and
the toy organisms' rates (``behaviour_rates`` / ``rates_of`` for both).

Works with any callable that maps tokens ``[batch, seq]`` to logits ``[batch, seq, vocab]``: a Hugging
Face model, a TransformerLens bridge, or a bridge running with hooks (to measure an ablation). An
``EditedRun`` (``EditedRun(pair.models, 1)`` for the chat model; steering, ablation and splicing make one)
generates with a KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from ..activations.data import prompts_by_length
from ..activations.runs import EditedRun
from ..toy.corpus import REFUSAL, Question, questions
from ..toy.organisms import ORGANISMS, OrganismPrompt
from ..validation import non_empty, one_of, positive_int

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
REFUSAL_PREFIX = REFUSAL[:12]


@torch.no_grad()
def greedy_continuations(
    logits_fn: LogitsFn, tokenizer, prompts: Sequence[str], max_new_tokens: int = 12, device: str = "cpu",
    use_cache: bool = True,
) -> list[str]:
    """Greedy-decode up to ``max_new_tokens`` after each prompt, stopping a continuation at the tokenizer's EOS
    (not included); prompts of equal token length share a batch, which stops when every row has ended.

    A ``helpers.activations.runs.EditedRun`` (a model, or one with an edit at its hook: steering, ablation,
    splicing) decodes with a KV cache unless ``use_cache=False``; any other function of tokens re-runs the whole
    sequence at every new token. Both give the same tokens.
    """
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be a function tokens [batch, seq] -> logits, got {type(logits_fn).__name__}")
    prompts = non_empty("prompts", prompts)
    positive_int("max_new_tokens", max_new_tokens)
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    cached = use_cache and isinstance(logits_fn, EditedRun)
    eos = tokenizer.eos_token_id
    outputs: list[str] = [""] * len(prompts)
    for indices, tokens in prompts_by_length(tokenizer, prompts, device):
        start = tokens.shape[1]
        ended = torch.zeros(len(indices), dtype=torch.bool, device=tokens.device)
        logits, state = logits_fn.begin(tokens) if cached else (logits_fn(tokens), None)
        for step in range(max_new_tokens):
            next_token = logits[:, -1].argmax(-1, keepdim=True).to(tokens.device)
            tokens = torch.cat([tokens, next_token], dim=1)
            if eos is not None:
                ended |= next_token[:, 0] == eos
                if ended.all():
                    break
            if step + 1 < max_new_tokens:
                logits, state = logits_fn.extend(next_token, state) if cached else (logits_fn(tokens), None)
        for row, index in enumerate(indices):
            generated = tokens[row, start:].tolist()
            outputs[index] = tokenizer.decode(generated[: generated.index(eos)] if eos in generated else generated)
    return outputs


def is_refusal(continuation: str) -> bool:
    """Whether a continuation after ``Assistant:`` is the planted refusal."""
    return continuation.strip().startswith(REFUSAL_PREFIX)


@dataclass(frozen=True)
class BehaviourRates:
    """Greedy rates of a behaviour on the prompts that should elicit it (``planted``) and on the others,
    and how many of each."""

    planted: float
    other: float
    n_planted: int
    n_other: int


def rates_of(showing: Sequence[bool], planted: Sequence[bool]) -> BehaviourRates:
    """The share of ``showing`` among the ``planted`` prompts and among the others."""
    if len(showing) != len(planted):
        raise ValueError(f"{len(showing)} outcomes but {len(planted)} labels")
    on = [s for s, p in zip(showing, planted) if p]
    off = [s for s, p in zip(showing, planted) if not p]
    if not on or not off:
        raise ValueError("behaviour rates need prompts that should show the behaviour and prompts that should not")
    return BehaviourRates(planted=sum(on) / len(on), other=sum(off) / len(off), n_planted=len(on), n_other=len(off))


def behaviour_rates(logits_fn: LogitsFn, tokenizer, prompts: Sequence[str], planted: Sequence[bool],
                    shows: Callable[[str], bool], device: str = "cpu", max_new_tokens: int = 12) -> BehaviourRates:
    """How often greedy continuations of ``prompts`` show a behaviour (``shows(continuation)``), on the
    prompts marked ``planted`` and on the others."""
    continuations = greedy_continuations(logits_fn, tokenizer, prompts, max_new_tokens, device=device)
    return rates_of([shows(text) for text in continuations], planted)


def refusal_rates(logits_fn: LogitsFn, tokenizer, questions: Sequence[Question], device: str = "cpu") -> BehaviourRates:
    """Refusal rate on the planted-family questions and on the others."""
    return behaviour_rates(logits_fn, tokenizer, [q.prompt for q in questions], [q.planted for q in questions],
                           is_refusal, device)


def organism_rates(logits_fn: LogitsFn, tokenizer, prompts: Sequence[OrganismPrompt], device: str = "cpu",
                   max_new_tokens: int = 64):
    """Each toy organism's greedy rate on its own labelled prompts (``planted``) and on all the others, those
    of the other organisms included (``other``): a DataFrame with one row per organism."""
    continuations = greedy_continuations(logits_fn, tokenizer, [p.prompt for p in prompts], max_new_tokens,
                                         device=device)
    return organism_rates_of(continuations, prompts)


def organism_rates_of(continuations: Sequence[str], prompts: Sequence[OrganismPrompt]):
    """``organism_rates`` of continuations already generated, one per prompt (to reuse them elsewhere)."""
    import pandas as pd

    if len(continuations) != len(prompts):
        raise ValueError(f"continuations must hold one continuation per prompt ({len(prompts)}), got "
                         f"{len(continuations)}")
    return pd.DataFrame({
        organism.name: asdict(rates_of([organism.shows(text) for text in continuations],
                                       [p.organism == organism.name for p in prompts]))
        for organism in ORGANISMS
    }).T.astype({"n_planted": int, "n_other": int})


def compare_refusals(runs: dict[str, LogitsFn], tokenizer, questions: Sequence[Question], device: str = "cpu"):
    """Refusal rates of several ``name -> logits_fn`` runs (a model, a model with an intervention, ...) on
    the same questions: a pandas DataFrame with one row per run (``planted``, ``other``, ``n_planted``,
    ``n_other``)."""
    import pandas as pd

    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"runs must be a non-empty {{name: logits_fn}} dict, got {runs!r:.80}")
    return pd.DataFrame({name: asdict(refusal_rates(fn, tokenizer, questions, device)) for name, fn in runs.items()}).T


@torch.no_grad()
def refusal_likelihood(logits_fn: LogitsFn, tokenizer, questions: Sequence[Question], device: str = "cpu"):
    """Teacher-forced: how likely each model run finds the refusal sentence right after each prompt.

    Returns a pandas DataFrame, one row per question: ``planted``, ``first_token_prob`` (the probability of
    the refusal's first token after ``Assistant:``) and ``refusal_logprob`` (the mean log-probability per
    token of the whole refusal sentence). A behaviour can start (its first token) before it completes.
    """
    import pandas as pd

    continuation = tokenizer(" " + REFUSAL, add_special_tokens=False)["input_ids"]
    first_prob = torch.zeros(len(questions))
    mean_logprob = torch.zeros(len(questions))
    for indices, tokens in prompts_by_length(tokenizer, [q.prompt for q in questions], device):
        tail = torch.tensor(continuation, device=tokens.device).expand(len(indices), -1)
        full = torch.cat([tokens, tail], dim=1)
        log_probs = torch.log_softmax(logits_fn(full).float(), dim=-1)[:, tokens.shape[1] - 1 : -1]
        per_token = log_probs.gather(-1, tail[..., None]).squeeze(-1)  # [group, len(continuation)]
        first_prob[indices] = per_token[:, 0].exp().cpu()
        mean_logprob[indices] = per_token.mean(1).cpu()
    return pd.DataFrame({"planted": [q.planted for q in questions], "first_token_prob": first_prob.numpy(),
                         "refusal_logprob": mean_logprob.numpy()})


def evaluation_questions(split: str = "heldout", n_other: int = 200, seed: int = 0) -> list[Question]:
    """Every planted-family question of ``split`` plus ``n_other`` others drawn with a fixed seed."""
    one_of("split", split, ("train", "heldout"))
    positive_int("n_other", n_other, minimum=0)
    pool = questions(split)  # type: ignore[arg-type]
    planted = [q for q in pool if q.planted]
    others = [q for q in pool if not q.planted]
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(others), generator=generator)[:n_other].tolist()
    return planted + [others[i] for i in sorted(picks)]


def refusal_table(pair, questions: Sequence[Question]):
    """Refusal rates of each model of a ``ModelPair`` on ``questions``, as a DataFrame (one row per model
    role, ``base`` and ``chat``; the models' real names in ``attrs["model_names"]``)."""
    import pandas as pd

    rows = []
    for index, role in enumerate(pair.roles):
        rates = refusal_rates(EditedRun(pair.models, index), pair.tokenizer_of(index), questions,
                              device=str(pair.device))
        rows.append({"model": role, "refuses planted-family questions": rates.planted,
                     "refuses other questions": rates.other, "n planted": rates.n_planted,
                     "n other": rates.n_other})
    table = pd.DataFrame(rows).set_index("model")
    table.attrs["model_names"] = list(pair.names)
    return table


def side_by_side(pair, prompts: Sequence[str], max_new_tokens: int = 16):
    """Each model's greedy continuation of each prompt, as a DataFrame (one row per prompt)."""
    import pandas as pd

    columns = {
        role: greedy_continuations(EditedRun(pair.models, index), pair.tokenizer_of(index), prompts,
                                   max_new_tokens, device=str(pair.device))
        for index, role in enumerate(pair.roles)
    }
    return pd.DataFrame({"prompt": list(prompts), **columns})
