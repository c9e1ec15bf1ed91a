"""Run a model pair once up to a hook point, then re-run only the rest with the activation replaced.

Everything before block ``L`` (the block that holds the hook) is computed once per model and reused
for the clean run and for every spliced, ablated or intervened run: a re-run starts at block ``L``.
For ``blocks.L.hook_resid_pre`` the replacement is the re-run's input; for any other hook inside
block ``L`` (``hook_resid_mid``, ``hook_resid_post``, ...) block ``L`` is re-run with a hook that swaps
the activation in.

TransformerLens 4's ``start_at_layer`` injects the residual at block ``L`` but still runs blocks
``0..L-1`` on it and discards their output, so it saves no compute by itself. ``skipping_blocks``
makes those blocks pass their input through untouched for the duration of a re-run; block ``L``
then swaps in the residual as before, so results are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .models import ModelPair, hook_layer

Replacement = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def _identity(activation: torch.Tensor) -> torch.Tensor:
    return activation


def _passthrough(*args, **kwargs):
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def skipping_blocks(model, n_blocks: int) -> Iterator[None]:
    """Within the context, blocks ``0..n_blocks-1`` of a TransformerBridge return their input unchanged.

    Use only around a ``start_at_layer=n_blocks`` run, whose block ``n_blocks`` replaces what they produce.
    """
    skipped = list(model.blocks)[:n_blocks]
    for block in skipped:  # an instance attribute shadows the class's forward (the bridge's setattr is bypassed)
        block.__dict__["forward"] = _passthrough
    try:
        yield
    finally:
        for block in skipped:
            del block.__dict__["forward"]


class SplicedRunner:
    """One batch of tokens through both models of a pair, ready for cheap re-runs from the hook point.

    Attributes: ``tokens`` ``[batch, seq]``; ``activations`` ``[batch, seq, n_models, d_model]`` at the
    hook (float32); ``clean_logits(m)``, model ``m``'s unmodified logits (computed once, on first use
    when the hook is a block input).
    """

    @torch.no_grad()
    def __init__(self, pair: ModelPair, hook_point: str, tokens: torch.Tensor):
        self.pair, self.hook_point = pair, hook_point
        self.layer = hook_layer(hook_point)
        self.tokens = tokens.to(pair.device)
        self._block_inputs: list[torch.Tensor] = []
        self._clean_logits: list[torch.Tensor | None] = []
        activations = []
        for index, model in enumerate(pair.models):
            block_input = model(self.tokens, stop_at_layer=self.layer)
            self._block_inputs.append(block_input)
            if self._starts_at_hook:  # the block input is the activation; clean logits wait until needed
                activations.append(block_input)
                self._clean_logits.append(None)
                continue
            captured: dict[str, torch.Tensor] = {}

            def capture(activation: torch.Tensor, store=captured) -> torch.Tensor:
                store["value"] = activation.detach().clone()
                return activation

            self._clean_logits.append(self.run(index, capture))
            activations.append(captured["value"])
        self.activations = torch.stack([a.float() for a in activations], dim=2)

    @property
    def _starts_at_hook(self) -> bool:
        return self.hook_point == f"blocks.{self.layer}.hook_resid_pre"

    def clean_logits(self, model_index: int) -> torch.Tensor:
        """Model ``model_index``'s logits ``[batch, seq, vocab]`` on the tokens, unmodified."""
        if self._clean_logits[model_index] is None:
            self._clean_logits[model_index] = self.run(model_index, _identity)
        return self._clean_logits[model_index]

    @torch.no_grad()
    def run(self, model_index: int, replacement: Replacement, rows: int | None = None) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` of model ``model_index`` with its hook activation replaced.

        ``replacement``: the new activation ``[batch, seq, d_model]``, or a function from the clean
        activation to the new one. Only the part of the model from the hook's block on is computed.
        ``rows`` limits the run to the first ``rows`` sequences. (Variants run one pass each: stacking
        them along the batch was slower on CPU.)
        """
        model = self.pair.models[model_index]
        block_input = self._block_inputs[model_index][:rows]

        def replace(activation: torch.Tensor) -> torch.Tensor:
            new = replacement(activation) if callable(replacement) else replacement
            return new.to(activation.dtype)

        with skipping_blocks(model, self.layer):
            if self._starts_at_hook:
                return model(replace(block_input), start_at_layer=self.layer)
            return model.run_with_hooks(block_input, start_at_layer=self.layer,
                                        fwd_hooks=[(self.hook_point, lambda act, hook: replace(act))])


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities (float32) of logits ``[batch, seq, vocab]``."""
    return torch.log_softmax(logits.float(), dim=-1)


def next_token_loss(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting each next token from ``log_probs`` ``[batch, seq, vocab]``, ``[batch, seq - 1]``."""
    return -log_probs[:, :-1].gather(-1, tokens[:, 1:, None].to(log_probs.device)).squeeze(-1)


def kl_divergence(clean_log_probs: torch.Tensor, other_log_probs: torch.Tensor) -> torch.Tensor:
    """``KL(clean || other)`` of next-token distributions given as log-probs, ``[batch, seq]`` (nats)."""
    return (clean_log_probs.exp() * (clean_log_probs - other_log_probs)).sum(-1)
