"""Load a pair (or more) of models through TransformerLens 4 and check that they can be diffed.

``load_model_pair("toy")`` loads the built-in toy pair; ``load_model_pair("gemma-2-2b")`` the
Gemma-2-2B base / IT pair; ``load_model_pair(a, b)`` any two Hub names or local folders. The models
must share a tokenizer (same vocabulary, same ids on a sample text) and ``d_model``, and a requested
hook point must exist. Models load with ``TransformerBridge.boot_transformers``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

SAMPLE_TEXT = "User: What does os.path.join do?\nAssistant: Join two or more pathname components.\n"


@dataclass(frozen=True)
class PairProfile:
    """A named model pair: the models (base first), the default site and the matching release."""

    base: str
    chat: str
    hook_point: str
    release: str | None
    min_gpu_gib: float = 0.0
    gated: bool = False


PAIRS: dict[str, PairProfile] = {
    "toy": PairProfile("toy:base", "toy:chat", "blocks.3.hook_resid_post", "toy-l3"),
    "gemma-2-2b": PairProfile(
        "google/gemma-2-2b", "google/gemma-2-2b-it", "blocks.14.hook_resid_pre", "gemma-2-2b-l14-replication",
        min_gpu_gib=15.0, gated=True,
    ),
}


class ModelPairError(ValueError):
    """Two models that cannot be diffed together, or a model or hook point that does not exist."""


class GatedModelError(PermissionError):
    """A gated Hub model requested without a Hub token."""


@dataclass
class ModelPair:
    """Loaded models (base first) with what the crosscoder code needs to know about them."""

    models: list
    names: list[str]
    tokenizer: object
    hook_point: str | None

    @property
    def base(self):
        return self.models[0]

    @property
    def chat(self):
        return self.models[1]

    @property
    def d_model(self) -> int:
        return int(self.models[0].cfg.d_model)

    @property
    def n_layers(self) -> int:
        return int(self.models[0].cfg.n_layers)

    @property
    def device(self) -> torch.device:
        return next(self.models[0].parameters()).device


def resolve_model_name(name: str) -> str:
    """Turn ``toy:base`` / ``toy:chat`` into the local folders; other names are returned unchanged."""
    if name.startswith("toy:"):
        from .toy import toy_pair_path

        role = name.split(":", 1)[1]
        if role not in ("base", "chat"):
            raise ModelPairError(f"the toy pair has models 'toy:base' and 'toy:chat', not {name!r}")
        return str(toy_pair_path() / role)
    return name


def _check_gated(name: str) -> None:
    gated = {p.base for p in PAIRS.values() if p.gated} | {p.chat for p in PAIRS.values() if p.gated}
    if name not in gated:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise GatedModelError(
            f"{name} is a gated model on the Hugging Face Hub and no Hub token was found. Accept its licence "
            f"at https://huggingface.co/{name}, then run `huggingface-cli login` (or set HF_TOKEN; in Colab add "
            "it under Secrets), or choose the toy pair with PAIR = 'toy'."
        )


def load_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """One model through ``TransformerBridge.boot_transformers``, in eval mode without gradients."""
    from transformer_lens.model_bridge import TransformerBridge

    path = resolve_model_name(name)
    if not Path(path).exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        raise ModelPairError(
            f"{name!r} is neither a local folder nor a Hub model id (org/name); known pairs: {sorted(PAIRS)}"
        )
    _check_gated(path)
    model = TransformerBridge.boot_transformers(path, device=str(device), dtype=dtype)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def check_same_tokenizer(tokenizers: list, names: list[str]) -> None:
    """Raise ``ModelPairError`` unless all tokenizers have one vocabulary and encode a sample alike."""
    reference_vocab = tokenizers[0].get_vocab()
    reference_ids = tokenizers[0](SAMPLE_TEXT)["input_ids"]
    for tokenizer, name in zip(tokenizers[1:], names[1:]):
        vocab = tokenizer.get_vocab()
        if vocab != reference_vocab:
            differing = len(set(vocab.items()) ^ set(reference_vocab.items()))
            raise ModelPairError(
                f"{names[0]} and {name} have different tokenizers ({len(reference_vocab)} vs {len(vocab)} tokens, "
                f"{differing} entries differ); a crosscoder needs both models to see the same tokens."
            )
        if tokenizer(SAMPLE_TEXT)["input_ids"] != reference_ids:
            raise ModelPairError(f"{names[0]} and {name} tokenize the same text differently")


def check_hook_point(model, hook_point: str) -> None:
    """Raise ``ModelPairError`` naming close matches unless ``hook_point`` is a hook of ``model``."""
    names = list(model.hook_dict)
    if hook_point not in names:
        close = difflib.get_close_matches(hook_point, names, n=5, cutoff=0.5)
        raise ModelPairError(f"hook point {hook_point!r} does not exist in this model; close matches: {close}")


def hook_layer(hook_point: str) -> int:
    """The block index of a ``blocks.L....`` hook point (``blocks.14.hook_resid_pre`` -> 14)."""
    match = re.match(r"blocks\.(\d+)\.", hook_point)
    if not match:
        raise ModelPairError(f"expected a per-block hook point like 'blocks.14.hook_resid_pre', got {hook_point!r}")
    return int(match.group(1))


def load_model_pair(
    a: str,
    b: str | None = None,
    *more: str,
    hook_point: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ModelPair:
    """Load a pair by profile name (``load_model_pair("toy")``) or by model names, and validate it.

    Args:
        a, b, *more: a pair name from ``PAIRS``, or two or more Hub ids / local folders (base first).
        hook_point: a hook to require (defaults to the profile's when a profile is named).
        device, dtype: where and how to load the models.
    """
    if b is None:
        if a not in PAIRS:
            close = difflib.get_close_matches(a, list(PAIRS), n=3, cutoff=0.3)
            raise ModelPairError(
                f"unknown model pair {a!r}; known pairs: {sorted(PAIRS)}"
                + (f" (did you mean {close}?)" if close else "")
                + ". To diff your own models, pass two names: load_model_pair('org/base', 'org/chat')."
            )
        profile = PAIRS[a]
        names = [profile.base, profile.chat]
        hook_point = hook_point or profile.hook_point
    else:
        names = [a, b, *more]
    for name in names:
        _check_gated(resolve_model_name(name))
    models = [load_model(name, device, dtype) for name in names]
    check_same_tokenizer([m.tokenizer for m in models], names)
    widths = [int(m.cfg.d_model) for m in models]
    if len(set(widths)) > 1:
        raise ModelPairError(f"the models have different widths d_model {dict(zip(names, widths))}")
    if hook_point is not None:
        for model in models:
            check_hook_point(model, hook_point)
    return ModelPair(models=models, names=names, tokenizer=models[0].tokenizer, hook_point=hook_point)
