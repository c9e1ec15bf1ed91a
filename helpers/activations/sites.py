"""Running models up to a site: hook arithmetic, harvesting activations, and spliced re-runs.

A *site* is a per-block hook point ``blocks.L.<hook>``. Everything that runs a model to a site goes
through here, so the rule "how far must a model run for this hook" is written once (``run_to_site``):
``blocks.L.hook_resid_pre`` is the input of block ``L``, which the bridge returns with
``stop_at_layer=L``; any other hook's activation is captured by a hook that then stops the forward pass.

``SplicedRunner`` computes everything before block ``L`` once per model and re-runs only the rest with
the activation replaced (for CE recovered, ablations, steering). TransformerLens 4's ``start_at_layer``
injects the residual at block ``L`` but still runs blocks ``0..L-1`` on it and discards their output;
``skipping_blocks`` makes those blocks pass their input through for the duration of a re-run, so a
re-run costs only the blocks from ``L`` on and gives identical results.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ..validation import non_empty, positive_int

Replacement = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
# Float32 log-probabilities alive at once when losses and KL are taken a chunk of positions at a time (128 MiB):
# a 256,000-token vocabulary's [4, 1024, vocab] log-probs are 3.9 GiB per tensor, and a KL holds several.
LOG_PROB_CHUNK_VALUES = 2**25
# Logits (in the model's dtype) one spliced re-run may produce (512 MiB): one 1,024-token row of Gemma-2's vocabulary.
SPLICE_LOGITS_BYTES = 2**29


class SiteError(ValueError):
    """A hook point that is not a per-block site."""


def hook_layer(hook_point: str) -> int:
    """The block index of a ``blocks.L....`` hook point (``blocks.14.hook_resid_pre`` -> 14)."""
    match = re.fullmatch(r"blocks\.(\d+)\.\w+(\.\w+)*", hook_point) if isinstance(hook_point, str) else None
    if not match:
        raise SiteError(f"expected a per-block hook point like 'blocks.14.hook_resid_pre', got {hook_point!r}")
    return int(match.group(1))


def is_block_input(hook_point: str) -> bool:
    """Whether the hook is the input of its block (``hook_resid_pre``): the output of ``stop_at_layer=L``."""
    return hook_point == f"blocks.{hook_layer(hook_point)}.hook_resid_pre"


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def check_tokens(model, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` if it is an integer ``[batch, seq]`` tensor of ids the model's vocabulary has; else a
    ``ValueError`` naming the problem (an out-of-range id is otherwise an index error, or a device-side
    assert on a GPU)."""
    integer = isinstance(tokens, torch.Tensor) and not tokens.is_floating_point() and tokens.dtype != torch.bool
    if not integer or tokens.ndim != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be an integer tensor [batch, seq], got {shape}"
                         + (f" of dtype {tokens.dtype}" if isinstance(tokens, torch.Tensor) else ""))
    if tokens.numel() == 0:
        raise ValueError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")
    context = getattr(model.cfg, "n_ctx", None)
    if isinstance(context, int) and tokens.shape[1] > context:
        raise ValueError(f"sequences of {tokens.shape[1]} tokens are longer than the model's context of {context}; "
                         "shorten the prompts (positions beyond the context are not what the model learned)")
    vocab = int(model.cfg.d_vocab)
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab:
        raise ValueError(f"token ids must lie in [0, {vocab}) (the model's vocabulary), got {low}..{high}; "
                         "were these tokens made with another tokenizer?")
    return tokens


class _ReachedSite(Exception):
    """Raised by the hook that captured the site's activation, so that nothing after the site is computed."""


@torch.no_grad()
def run_to_site(model, tokens: torch.Tensor, hook_point: str) -> torch.Tensor:
    """One model's activation at ``hook_point``, ``[batch, seq, d_model]``, running no further than needed: a
    block input is the output of ``stop_at_layer``; any other hook stops the forward pass right after it (so the
    last block's output costs no final norm, unembedding or logit soft-capping)."""
    layer = hook_layer(hook_point)
    tokens = check_tokens(model, tokens).to(model_device(model))
    if is_block_input(hook_point):
        return model(tokens, stop_at_layer=layer)
    captured: dict[str, torch.Tensor] = {}

    def capture(activation: torch.Tensor, hook) -> torch.Tensor:
        captured["value"] = activation
        raise _ReachedSite

    try:
        model.run_with_hooks(tokens, fwd_hooks=[(hook_point, capture)])
    except _ReachedSite:
        pass
    if "value" not in captured:
        raise SiteError(f"hook point {hook_point!r} never fired in a forward pass of this model")
    return captured["value"]


@torch.no_grad()
def harvest(models: list, tokens: torch.Tensor, hook_point: str) -> torch.Tensor:
    """Activations of all ``models`` at ``hook_point``: ``[batch, seq, n_models, d_model]`` (float32) for
    tokens ``[batch, seq]``."""
    models = non_empty("models", models)
    hooks = getattr(models[0], "hook_dict", None)
    if not hook_layer(hook_point) < models[0].cfg.n_layers or (hooks is not None and hook_point not in hooks):
        raise SiteError(f"hook_point {hook_point!r} is not a hook of these {models[0].cfg.n_layers}-layer models")
    return torch.stack([run_to_site(model, tokens, hook_point).float() for model in models], dim=2)


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
    """One batch of tokens through a list of models, ready for cheap re-runs from the hook point.

    Attributes: ``tokens`` ``[batch, seq]``; ``activations`` ``[batch, seq, n_models, d_model]`` at the
    hook (float32); ``clean_logits(m)``, model ``m``'s unmodified logits (computed once, on first use
    when the hook is a block input).
    """

    @torch.no_grad()
    def __init__(self, models: list, hook_point: str, tokens: torch.Tensor):
        self.models, self.hook_point = list(models), hook_point
        self.layer = hook_layer(hook_point)
        self.tokens = check_tokens(self.models[0], tokens).to(model_device(self.models[0]))
        self._block_inputs: list[torch.Tensor] = []
        self._clean_logits: list[torch.Tensor | None] = []
        activations = []
        for index, model in enumerate(self.models):
            block_input = model(self.tokens, stop_at_layer=self.layer)
            self._block_inputs.append(block_input)
            if is_block_input(hook_point):  # the block input is the activation; clean logits wait until needed
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

    def clean_logits(self, model_index: int) -> torch.Tensor:
        """Model ``model_index``'s logits ``[batch, seq, vocab]`` on the tokens, unmodified."""
        if self._clean_logits[model_index] is None:
            self._clean_logits[model_index] = self.run(model_index, _identity)
        return self._clean_logits[model_index]

    @torch.no_grad()
    def run(self, model_index: int, replacement: Replacement, rows: int | torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` of model ``model_index`` with its hook activation replaced.

        ``replacement``: the new activation ``[batch, seq, d_model]`` (of the rows run), or a function from the clean
        activation to the new one. Only the part of the model from the hook's block on is computed.
        ``rows`` limits the run to the first ``rows`` sequences, or (a 1-D tensor of row indices) to those rows;
        ``batch`` is then their number. (Variants run one pass each: stacking them along the batch was slower on
        CPU.)
        """
        model = self.models[model_index]
        if isinstance(rows, torch.Tensor):
            if rows.dim() != 1 or rows.is_floating_point() or rows.numel() == 0:
                raise ValueError(f"rows must be a non-empty 1-D tensor of row indices, got {rows!r:.80}")
            block_input = self._block_inputs[model_index][rows.to(self._block_inputs[model_index].device)]
        else:
            block_input = self._block_inputs[model_index][:rows]

        def replace(activation: torch.Tensor) -> torch.Tensor:
            new = replacement(activation) if callable(replacement) else replacement
            return new.to(activation.dtype)

        with skipping_blocks(model, self.layer):
            if is_block_input(self.hook_point):
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


def splice_rows_per_pass(seq_len: int, vocab: int, bytes_per_value: int) -> int:
    """How many sequences of ``seq_len`` tokens one spliced re-run takes so that its logits stay within
    ``SPLICE_LOGITS_BYTES`` (at least one)."""
    for name, value in (("seq_len", seq_len), ("vocab", vocab), ("bytes_per_value", bytes_per_value)):
        positive_int(name, value)
    return max(1, SPLICE_LOGITS_BYTES // (seq_len * vocab * bytes_per_value))


def _check_logits(name: str, logits: torch.Tensor, like: torch.Size | None = None) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or 0 in logits.shape:
        raise ValueError(f"{name} must be logits [batch, seq, vocab], got "
                         f"{list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if like is not None and logits.shape != like:
        raise ValueError(f"{name} has shape {list(logits.shape)}, the clean logits {list(like)}")


def _position_chunks(batch: int, seq: int, vocab: int) -> Iterator[tuple[int, slice]]:
    step = max(1, LOG_PROB_CHUNK_VALUES // vocab)
    for row in range(batch):
        for start in range(0, seq, step):
            yield row, slice(start, min(seq, start + step))


@torch.no_grad()
def chunked_next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``next_token_loss(log_probs(logits), tokens)`` ``[batch, seq - 1]`` (float32), a chunk of positions at a
    time, so that no float32 copy of the whole ``[batch, seq, vocab]`` exists (``logits`` may be an expanded view)."""
    _check_logits("logits", logits)
    if not isinstance(tokens, torch.Tensor) or tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens must be [batch, seq] = {list(logits.shape[:2])}, got "
                         f"{list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__}")
    batch, seq, vocab = logits.shape
    targets = tokens[:, 1:, None].to(logits.device)
    losses = torch.empty(batch, seq - 1, device=logits.device)
    for row, span in _position_chunks(batch, seq - 1, vocab):
        losses[row, span] = -log_probs(logits[row, span]).gather(-1, targets[row, span]).squeeze(-1)
    return losses


@torch.no_grad()
def chunked_kl_divergence(clean_logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """``kl_divergence(log_probs(clean_logits), log_probs(other_logits))`` ``[batch, seq]``, a chunk of positions at
    a time (see ``chunked_next_token_loss``)."""
    _check_logits("clean_logits", clean_logits)
    _check_logits("other_logits", other_logits, clean_logits.shape)
    batch, seq, vocab = clean_logits.shape
    divergences = torch.empty(batch, seq, device=clean_logits.device)
    for row, span in _position_chunks(batch, seq, vocab):
        divergences[row, span] = kl_divergence(log_probs(clean_logits[row, span]), log_probs(other_logits[row, span]))
    return divergences
