"""Steering with a latent: add (a multiple of) one latent's decoder vector to one model's activation at the
crosscoder's hook point, in a forward pass or during generation.

``latent_direction`` is the vector a latent of activation 1 adds to a model's *raw* activation (its decoder
vector for ``vector_model``, chat by default); ``steered_logits_fn`` adds ``strength`` times it to model
``model_index`` (the base model by default), either at every position or only where the crosscoder says the
latent fires (``where="active"``: both models are encoded on the same tokens, as a patch of the chat latent
into the base model). ``steering_curve`` measures the toy pair's refusal rates against the strength: does the
planted latent's chat decoder, added to the base model, make it refuse?
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..activations.diff import check_compatible
from ..activations.models import ModelPair, check_hook_point
from ..activations.runs import EditedRun
from ..crosscoder.model import CrossCoder
from ..toy.corpus import Question
from ..validation import positive_int, real
from .behaviour import compare_refusals, refusal_likelihood
from .latents import check_latent_ids, encode_run_positions

WHERE = ("all", "active")


def latent_direction(crosscoder: CrossCoder, latent: int, vector_model: int = 1) -> torch.Tensor:
    """The raw-space decoder vector ``[d_model]`` of ``latent`` for model ``vector_model``."""
    (latent,) = check_latent_ids(crosscoder, [latent]).tolist()
    return crosscoder.decoder_vectors(normalized=False)[latent, vector_model].detach().float()


def steered_logits_fn(pair: ModelPair, crosscoder: CrossCoder, latent: int, strength: float, model_index: int = 0,
                      vector_model: int = 1, where: str = "all") -> EditedRun:
    """``tokens [batch, seq] -> logits [batch, seq, vocab]`` of model ``model_index`` with ``strength`` times the
    latent's decoder vector (of ``vector_model``) added at the hook point: at every position (``where="all"``)
    or where the latent fires on these tokens (``"active"``). Works with ``greedy_continuations``."""
    if where not in WHERE:
        raise ValueError(f"where must be one of {WHERE}, got {where!r}")
    hook_point = check_compatible(crosscoder, pair)
    positive_int("vector_model", vector_model, minimum=0, maximum=len(pair.models) - 1)
    vector = latent_direction(crosscoder, latent, vector_model).to(pair.device)
    if where == "all":
        return vector_logits_fn(pair, vector, strength, hook_point, model_index)
    bos_id = pair.tokenizer.bos_token_id

    def shift(activations: torch.Tensor, tokens: torch.Tensor, start: int) -> torch.Tensor:
        fires = encode_run_positions(crosscoder, activations, tokens, start, bos_id)[..., latent] > 0  # [batch, new]
        return strength * fires[..., None].to(vector.device, vector.dtype) * vector

    return _adding(pair, hook_point, model_index, shift, strength, reads_all=True)


def vector_logits_fn(pair: ModelPair, vector: torch.Tensor, strength: float, hook_point: str,
                     model_index: int = 0) -> EditedRun:
    """``tokens [batch, seq] -> logits [batch, seq, vocab]`` of model ``model_index`` with ``strength * vector``
    (``[d_model]``, raw activation space) added at ``hook_point`` at every position: steering with any
    direction (a latent's decoder vector, a mean activation difference, a probe)."""
    d_model = int(pair.models[0].cfg.d_model)
    if not isinstance(vector, torch.Tensor) or tuple(vector.shape) != (d_model,) or not vector.is_floating_point():
        shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise ValueError(f"vector must be a floating-point tensor [d_model={d_model}], got {shape}")
    if not torch.isfinite(vector).all():
        raise ValueError("vector holds NaN or infinite values")
    vector = vector.to(pair.device)
    return _adding(pair, hook_point, model_index, lambda *_: strength * vector, strength)


def _adding(pair: ModelPair, hook_point: str, model_index: int, shift_for, strength: float,
            reads_all: bool = False) -> EditedRun:
    """An ``EditedRun`` that adds ``shift_for(activations, tokens, start)`` (broadcast to ``[batch, new, d_model]``)
    at the hook; the arguments every steering function shares are checked here, once, before any forward pass."""
    real("strength", strength)
    positive_int("model_index", model_index, minimum=0, maximum=len(pair.models) - 1)
    check_hook_point(pair.models[model_index], hook_point)

    def add(activation: torch.Tensor, activations: torch.Tensor | None, tokens: torch.Tensor,
            start: int) -> torch.Tensor:
        return activation + shift_for(activations, tokens, start).to(activation.device, activation.dtype)

    return EditedRun(pair.models, model_index, hook_point, add, reads_all=reads_all)


def steering_curve(pair: ModelPair, crosscoder: CrossCoder, latent: int, strengths: Sequence[float],
                   questions: Sequence[Question], model_index: int = 0, vector_model: int = 1, where: str = "all"):
    """The steered model's refusals at each strength: a pandas DataFrame indexed by ``strength`` with
    ``planted`` and ``other`` (the shares of planted-family and other questions refused by greedy
    generation), their counts, and teacher-forced ``first_token_prob_{planted,other}`` and
    ``refusal_logprob_{planted,other}`` (``helpers.analysis.behaviour.refusal_likelihood``, averaged)."""
    strengths = [real("strength", s) for s in strengths]
    if not strengths or not questions:
        raise ValueError(f"steering_curve needs strengths and questions, got {len(strengths)} and {len(questions)}")
    runs = {s: steered_logits_fn(pair, crosscoder, latent, s, model_index, vector_model, where) for s in strengths}
    table = compare_refusals(runs, pair.tokenizer, questions, device=str(pair.device))
    for strength, run in runs.items():
        likelihood = refusal_likelihood(run, pair.tokenizer, questions, device=str(pair.device))
        means = likelihood.groupby("planted")[["first_token_prob", "refusal_logprob"]].mean()
        for column in means.columns:
            table.loc[strength, f"{column}_planted"] = means.loc[True, column]
            table.loc[strength, f"{column}_other"] = means.loc[False, column]
    table.index.name = "strength"
    return table
