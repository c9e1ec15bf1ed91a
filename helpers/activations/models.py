"""Load a pair (or more) of models through TransformerLens 4 and check that they can be diffed.

``load_model_pair("toy")`` loads a registered pair (``helpers/registry.yaml``, or one added with
``register_pair``) at its release's hook point; ``load_model_pair(a, b, hook_point=...)`` any two Hub
names or local folders. The models must share a tokenizer (same vocabulary, same ids on a sample text)
and ``d_model``, and the hook point must exist. Models load with ``TransformerBridge.boot_transformers``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..registry import PAIRS, TOKENIZER_MODES, Pair, RegistryError, get_pair, model_roles

SAMPLE_TEXT = "User: What does os.path.join do?\nAssistant: Join two or more pathname components.\n"


class ModelPairError(ValueError):
    """Two models that cannot be diffed together, or a model or hook point that does not exist."""


class GatedModelError(PermissionError):
    """A gated Hub model requested without a Hub token."""


@dataclass
class ModelPair:
    """Loaded models (base first) with what the crosscoder code needs to know about them.

    Attributes:
        models: the TransformerBridges, base first.
        names: the models' real names (Hub ids or folders), in the same order.
        tokenizer: their shared tokenizer; for a pair with separate tokenizers a ``SeparateTokenizers`` that
            refuses every use, so that code assuming one tokenizer stops with a clear error.
        hook_point: the site this pair was loaded for (checked to exist in every model).
        profile: the registered pair it was loaded from (``None`` for two models named directly).
        tokenizers: each model's own tokenizer, for a pair with separate tokenizers (else empty).
    """

    models: list
    names: list[str]
    tokenizer: object
    hook_point: str
    profile: Pair | None = None
    tokenizers: list = field(default_factory=list)

    @property
    def separate_tokenizers(self) -> bool:
        """Whether each model reads text with its own tokenizer (pair them with ``helpers.activations.alignment``)."""
        return bool(self.tokenizers)

    def tokenizer_of(self, index: int):
        """Model ``index``'s own tokenizer (the shared one unless the pair's tokenizers are separate)."""
        if not isinstance(index, int) or not 0 <= index < len(self.models):
            raise ValueError(f"index must be a model index in [0, {len(self.models)}), got {index!r}")
        return self.tokenizers[index] if self.separate_tokenizers else self.tokenizer

    @property
    def name(self) -> str:
        """The registered pair's name, or ``base vs chat`` for models named directly."""
        return self.profile.name if self.profile else " vs ".join(self.names)

    @property
    def roles(self) -> list[str]:
        """``["base", "chat"]``: how result tables name the models."""
        return model_roles(len(self.models))

    def at(self, hook_point: str) -> ModelPair:
        """The same loaded models at another site (checked to exist in every model)."""
        for model in self.models:
            check_hook_point(model, hook_point)
        return replace(self, hook_point=hook_point)

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
    """Turn ``toy:base`` / ``toy:chat`` / ``toy:organisms`` (the toy organisms' chat model) / ``toy:llama`` (the
    cross-architecture Llama) / ``toy:narrow/NAME`` (a narrow organism, ``helpers.toy.narrow``) into local folders;
    other names are returned unchanged."""
    if name.startswith("toy:"):
        from ..toy.narrow import get_narrow_organism
        from ..toy.shipped import cross_arch_llama_path, narrow_organism_path, organisms_path, toy_pair_path

        role = name.split(":", 1)[1]
        if role == "organisms":
            return str(organisms_path() / "chat")
        if role == "llama":
            return str(cross_arch_llama_path())
        if role.startswith("narrow/"):
            return str(narrow_organism_path(get_narrow_organism(role.removeprefix("narrow/")).name))
        if role not in ("base", "chat"):
            raise ModelPairError(f"the toy models are 'toy:base', 'toy:chat', 'toy:organisms', 'toy:llama' and "
                                 f"'toy:narrow/NAME', not {name!r}")
        return str(toy_pair_path() / role)
    return name


def _check_gated(name: str) -> None:
    gated = {model for p in PAIRS.values() if p.gated for model in p.model_names}
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
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no "Loading weights 0/46" bars left in notebook outputs
    try:
        model = TransformerBridge.boot_transformers(path, device=str(device), dtype=dtype)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class SeparateTokenizers:
    """``ModelPair.tokenizer`` of a pair whose models have different tokenizers: using it raises ``ModelPairError``
    (the models' token ids mean different tokens, so no single tokenizer can feed both)."""

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def _refuse(self) -> ModelPairError:
        return ModelPairError(f"{' and '.join(self._names)} have separate tokenizers (tokenizers: separate), and this "
                              "needs one tokenizer for both models; pair their activations where the tokenizations "
                              "line up with helpers.activations.alignment.AlignedHarvestingSource")

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._refuse()

    def __call__(self, *args, **kwargs):
        raise self._refuse()


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


def load_model_pair(
    a: str,
    b: str | None = None,
    *more: str,
    hook_point: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizers: str | None = None,
) -> ModelPair:
    """Load a pair by its registered name (``load_model_pair("toy")``) or by model names, and validate it.

    Args:
        a, b, *more: a registered pair name, or two or more Hub ids / local folders (base first).
        hook_point: the site; a registered pair defaults to its release's, models named directly need one.
        device, dtype: where and how to load the models.
        tokenizers: ``shared`` (checked: one vocabulary, the same tokens) or ``separate`` (each model its own); a
            registered pair defaults to what it declares, models named directly to ``shared``.
    """
    profile = None
    if b is None:
        try:
            profile = get_pair(a)
        except RegistryError as error:
            raise ModelPairError(
                f"{error}. To diff your own models, pass two names: load_model_pair('org/base', 'org/chat', "
                "hook_point=...), or register them with helpers.register_pair."
            ) from None
        names = list(profile.model_names)
        hook_point = profile.hook_point if hook_point is None else hook_point
    else:
        names = [a, b, *more]
    tokenizers = tokenizers or (profile.tokenizers if profile else "shared")
    if tokenizers not in TOKENIZER_MODES:
        raise ModelPairError(f"tokenizers must be one of {list(TOKENIZER_MODES)}, got {tokenizers!r}")
    if not isinstance(hook_point, str) or not hook_point:
        raise ModelPairError(f"a hook point is needed to diff {names} (e.g. 'blocks.12.hook_resid_pre'), "
                             f"got {hook_point!r}")
    for name in names:
        _check_gated(resolve_model_name(name))
    models = [load_model(name, device, dtype) for name in names]
    separate = tokenizers == "separate"
    if not separate:
        check_same_tokenizer([m.tokenizer for m in models], names)
    widths = [int(m.cfg.d_model) for m in models]
    if len(set(widths)) > 1:
        raise ModelPairError(f"the models have different widths d_model {dict(zip(names, widths))}")
    for model in models:
        check_hook_point(model, hook_point)
    return ModelPair(models=models, names=names, hook_point=hook_point, profile=profile,
                     tokenizer=SeparateTokenizers(names) if separate else models[0].tokenizer,
                     tokenizers=[m.tokenizer for m in models] if separate else [])
