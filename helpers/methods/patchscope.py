"""Patchscope: read a direction by writing it into a model mid-prompt and reading the next token it predicts.

As science-of-finetuning/diffing-toolkit runs it for the Activation Difference Lens (``auto_patch_scope``, and
``PatchscopeLens`` in ``diff_mining``): the token-identity prompt ``"man -> man\\n1135 -> 1135\\nhello -> hello\\n?"``
makes a model repeat the token before it; the residual stream at the prompt's last position (the ``?``) is replaced,
at one site, by the direction (rescaled, as the toolkit's ``use_normalized``, to the norm the model's own
activations have there), and the next-token distribution at that position says what token the direction stands
for. One scale is used here (the toolkit also sweeps several and intersects their top tokens).
"""

from __future__ import annotations

import torch

from ..activations.models import check_hook_point
from ..activations.runs import EditedRun
from ..activations.sites import harvest
from ..validation import positive_int

IDENTITY_PROMPT = "man -> man\n1135 -> 1135\nhello -> hello\n?"


def _prompt_tokens(model, tokenizer, prompt: str) -> torch.Tensor:
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r:.60}")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return torch.tensor([bos + ids], device=next(model.parameters()).device)


@torch.no_grad()
def patchscope(model, tokenizer, vectors: torch.Tensor, hook_point: str, prompt: str = IDENTITY_PROMPT,
               norm: float | None = None) -> torch.Tensor:
    """Next-token probabilities ``[n, vocab]`` (float32, CPU) of ``model`` on ``prompt`` with the residual stream at
    its last position replaced at ``hook_point`` by each of ``vectors`` ``[n, d_model]`` (or one ``[d_model]``),
    each rescaled to ``norm`` (default: the mean norm of the model's own activations there over the prompt, BOS
    left out)."""
    check_hook_point(model, hook_point)
    d_model = int(model.cfg.d_model)
    if not isinstance(vectors, torch.Tensor) or not vectors.is_floating_point() or vectors.shape[-1:] != (d_model,) \
            or vectors.ndim not in (1, 2) or vectors.numel() == 0:
        shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
        raise ValueError(f"vectors must be a floating-point tensor [n, d_model={d_model}] or [d_model], got {shape}")
    vectors = vectors.reshape(-1, d_model).float()
    lengths = vectors.norm(dim=-1)
    if not torch.isfinite(vectors).all() or (lengths == 0).any():
        raise ValueError("vectors must be finite and non-zero (a direction is rescaled to the model's norm)")
    tokens = _prompt_tokens(model, tokenizer, prompt)
    if norm is None:
        own = harvest([model], tokens, hook_point)[0, 1:, 0].float()  # [seq - 1, d_model]
        norm = float(own.norm(dim=-1).mean())
    elif not (isinstance(norm, int | float) and norm > 0):
        raise ValueError(f"norm must be a positive number, got {norm!r}")
    directions = vectors / lengths[:, None] * norm

    def write(activation: torch.Tensor, _all, _tokens, start: int) -> torch.Tensor:
        activation = activation.clone()
        activation[:, -1] = directions.to(activation.device, activation.dtype)
        return activation

    run = EditedRun([model], 0, hook_point, write)
    logits = run(tokens.expand(len(directions), -1))[:, -1]
    return logits.float().softmax(dim=-1).cpu()


def top_tokens(tokenizer, probabilities: torch.Tensor, k: int = 20) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable tokens of each row of ``probabilities`` ``[n, vocab]``, as ``(token, probability)``."""
    positive_int("k", k)
    if not isinstance(probabilities, torch.Tensor) or probabilities.ndim != 2:
        raise ValueError("probabilities must be a tensor [n, vocab]")
    top = probabilities.topk(min(k, probabilities.shape[-1]), dim=-1)
    return [list(zip(tokenizer.convert_ids_to_tokens(ids), values)) for ids, values in
            zip(top.indices.tolist(), top.values.tolist())]
