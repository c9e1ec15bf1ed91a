"""A model run with an edit at one hook point, as a logits function that can also decode with a KV cache.

``EditedRun`` is what generation, steering, ablation and splicing share: ``run(tokens)`` gives model
``target``'s logits ``[batch, seq, vocab]`` with its activation at ``hook_point`` replaced by
``edit(activation, activations, tokens, start)``, where

- ``activation`` ``[batch, new, d_model]`` is the target's clean activation at the hook on the positions
  being computed;
- ``activations`` ``[batch, new, n_models, d_model]`` (float32) holds every model's clean activation on the
  same positions when the edit reads the other models (``reads_all=True``, e.g. to encode them with a
  crosscoder), else ``None``;
- ``tokens`` ``[batch, new]`` are the tokens at those positions, and ``start`` the absolute position of the
  first of them (0 on a full run), so an edit can treat BOS apart.

Every edit the helpers make is per position: it depends on the activations at that position and on nothing
later. So greedy decoding may keep each model's Hugging Face KV cache (``begin`` on the prompt, then
``extend`` with each new token, through the bridge's ``return_type="logits_and_cache"``) and get the tokens
of a full re-run at every step (``tests/test_generation.py`` checks every hooked variant token for token).
A model whose activations an edit reads runs with its own cache alongside.

Transformers 5.2x hands each attention layer its cache as ``cache=`` where TransformerLens 4.3's attention
bridges read ``past_key_values=``, so they would neither fill nor read it: ``_pass_cache_on`` gives each
attention bridge the cache under both names. ``begin`` checks that every cache holds the prompt afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..validation import positive_int
from .models import check_hook_point
from .sites import check_tokens, model_device

Edit = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, int], torch.Tensor]


@dataclass
class RunState:
    """What a cached run carries between steps: each model's Hugging Face cache (``None`` for models the run
    does not need) and the number of positions already computed."""

    caches: list
    length: int


def _copy_cache_kwarg(module, args, kwargs):
    if "cache" in kwargs and kwargs.get("past_key_values") is None:
        return args, {**kwargs, "past_key_values": kwargs["cache"]}
    return None


def _pass_cache_on(model) -> None:
    """Let every attention bridge of ``model`` find the layer cache under the name it reads (once per model)."""
    if getattr(model, "_crosscoder_cache_shim", False):
        return
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    for module in model.modules():
        if isinstance(module, AttentionBridge):
            module.register_forward_pre_hook(_copy_cache_kwarg, with_kwargs=True)
    model._crosscoder_cache_shim = True


class EditedRun:
    """Model ``target`` of ``models`` with ``edit`` at ``hook_point`` (no edit: the plain model).

    Call it as a logits function (``run(tokens [batch, seq]) -> logits [batch, seq, vocab]``, a full forward), or
    decode with ``begin(tokens)`` and ``extend(new_tokens, state)`` (a KV cache per model).
    """

    def __init__(self, models: list, target: int, hook_point: str | None = None, edit: Edit | None = None,
                 reads_all: bool = False):
        if not isinstance(models, (list, tuple)) or not models:
            raise ValueError(f"models must be a non-empty list of models, got {type(models).__name__}")
        positive_int("target", target, minimum=0, maximum=len(models) - 1)
        if edit is not None and not callable(edit):
            raise TypeError(f"edit must be a function (activation, activations, tokens, start) -> activation, got "
                            f"{type(edit).__name__}")
        if edit is not None or reads_all:
            if hook_point is None:
                raise ValueError("an edit needs the hook_point it acts at")
            for model in models:
                check_hook_point(model, hook_point)
        self.models, self.target, self.hook_point = list(models), target, hook_point
        self.edit, self.reads_all = edit, bool(reads_all and edit is not None)

    @property
    def model(self):
        """The model whose logits this run returns."""
        return self.models[self.target]

    def _needed(self) -> list[int]:
        """The models this run must execute: the target, and every model when the edit reads them all."""
        return list(range(len(self.models))) if self.reads_all else [self.target]

    @torch.no_grad()
    def _forward(self, tokens: torch.Tensor, caches: list | None, start: int) -> tuple[torch.Tensor, list]:
        """Logits of the target on ``tokens`` (the positions from ``start``), continuing ``caches`` when given
        (``None``: a full forward without cache); returns the logits and the updated caches."""
        use_cache = caches is not None
        caches = list(caches) if use_cache else [None] * len(self.models)
        captured: list[torch.Tensor | None] = [None] * len(self.models)
        for index in self._needed():
            if index == self.target:
                continue
            captured[index], caches[index] = self._run(index, tokens, caches[index], use_cache, capture=True)
        activations = None

        def edit_hook(activation: torch.Tensor, hook) -> torch.Tensor:
            nonlocal activations
            if self.reads_all:
                captured[self.target] = activation
                activations = torch.stack([a.float() for a in captured], dim=2)
            return self.edit(activation, activations, tokens, start).to(activation.dtype)

        hooks = [(self.hook_point, edit_hook)] if self.edit is not None else []
        logits, caches[self.target] = self._run(self.target, tokens, caches[self.target], use_cache, hooks=hooks)
        return logits, caches

    def _run(self, index: int, tokens: torch.Tensor, cache, use_cache: bool, capture: bool = False, hooks=()):
        """Model ``index`` on ``tokens``: ``(logits, cache)``, or ``(activation at the hook, cache)`` if ``capture``."""
        model = self.models[index]
        store: dict[str, torch.Tensor] = {}

        def keep(activation: torch.Tensor, hook) -> torch.Tensor:
            store["value"] = activation.detach().clone()
            return activation

        hooks = [(self.hook_point, keep)] if capture else list(hooks)
        kwargs = {"return_type": "logits_and_cache", "use_cache": True} if use_cache else {}
        if cache is not None:
            kwargs["past_key_values"] = cache
        with model.hooks(fwd_hooks=hooks), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*past_key_values.* is deprecated", category=FutureWarning)
            output = model(tokens.to(model_device(model)), **kwargs)
        logits, cache = output if use_cache else (output, None)
        return (store["value"] if capture else logits), cache

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` of a full forward on ``tokens [batch, seq]``."""
        tokens = check_tokens(self.model, tokens)
        return self._forward(tokens, None, 0)[0]

    def begin(self, tokens: torch.Tensor) -> tuple[torch.Tensor, RunState]:
        """Logits ``[batch, seq, vocab]`` of ``tokens [batch, seq]`` and the state to ``extend`` from."""
        tokens = check_tokens(self.model, tokens)
        for index in self._needed():
            _pass_cache_on(self.models[index])
        logits, caches = self._forward(tokens, [None] * len(self.models), 0)
        for index in self._needed():
            held = caches[index].get_seq_length() if caches[index] is not None else 0
            if held != tokens.shape[1]:
                raise RuntimeError(f"model {index}'s KV cache holds {held} of {tokens.shape[1]} positions after the "
                                   "prompt: this TransformerLens / transformers pair does not fill it; decode with "
                                   "use_cache=False")
        return logits, RunState(caches, tokens.shape[1])

    def extend(self, tokens: torch.Tensor, state: RunState) -> tuple[torch.Tensor, RunState]:
        """Logits ``[batch, new, vocab]`` of ``tokens [batch, new]`` following what ``state`` has seen."""
        if not isinstance(state, RunState):
            raise TypeError(f"state must be the RunState that begin or extend returned, got {type(state).__name__}")
        tokens = check_tokens(self.model, tokens)
        context = getattr(self.model.cfg, "n_ctx", None)
        if isinstance(context, int) and state.length + tokens.shape[1] > context:
            raise ValueError(f"{state.length + tokens.shape[1]} positions exceed the model's context of {context}")
        logits, caches = self._forward(tokens, state.caches, state.length)
        return logits, RunState(caches, state.length + tokens.shape[1])
