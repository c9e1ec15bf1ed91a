"""``CrossCoderConfig``: everything that fixes a crosscoder's architecture, validated on construction.

Training knobs live in ``helpers.training.trainer.TrainConfig``. A config is what ``cfg.json`` stores.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import torch

from ..dtypes import DTYPES
from ..registry import model_roles
from ..validation import one_of, optional_positive_int, positive_int, real

Activation = Literal["relu", "topk", "batchtopk", "jumprelu"]
CodeNormalization = Literal["crosscoder", "sae", "none"]
ACTIVATIONS: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu")
TOP_K_ACTIVATIONS: tuple[str, ...] = ("topk", "batchtopk")
CODE_NORMALIZATIONS: tuple[str, ...] = ("crosscoder", "sae", "none")
# What a checkpoint's cfg.json holds beside the fields: its format, the variant (for reading), the training record,
# and the id that ties it to its weights file (helpers.crosscoder.checkpoints).
FILE_KEYS = frozenset({"format", "variant", "extra", "save_id"})


@dataclass
class CrossCoderConfig:
    """Everything that fixes a crosscoder's architecture (training knobs live in ``TrainConfig``).

    Attributes:
        d_model: width of each model's activation at the hook point.
        d_hidden: number of latents (dictionary size).
        n_models: number of models; index 0 is the base model (A), 1 the fine-tuned model (B). With 1 the
            crosscoder is a sparse autoencoder.
        activation: ``relu`` (L1-penalised), ``topk`` (k per token), ``batchtopk`` (k * batch per
            batch while training, a learned threshold at inference) or ``jumprelu`` (a learned threshold per
            latent, Anthropic's tanh penalty and pre-activation loss: ``helpers.crosscoder.jumprelu``).
        k: active latents per token for the top-k variants.
        code_normalization: how each latent's activation is weighted by its decoder norms, in the
            sparsity penalty and in top-k selection: ``crosscoder`` = sum over models of
            ``||W_dec[j, m]||`` (Anthropic's weighting), ``sae`` = norm of the concatenated decoder
            vectors, ``none`` = 1.
        dec_init_norm: norm of each model's decoder vector at initialisation.
        aux_k: dead latents used by the auxiliary loss of the top-k variants (default ``d_model // 2``).
        aux_k_coeff: weight of the auxiliary loss in the total loss.
        dead_after_tokens: a latent that has not fired for this many training tokens counts as dead.
        threshold_beta: EMA decay of the BatchTopK inference threshold.
        jumprelu_bandwidth: width of the straight-through estimator's rectangle kernel (Anthropic: 2.0).
        jumprelu_init_threshold: every latent's JumpReLU threshold at initialisation.
        tanh_scale: ``c`` in the JumpReLU sparsity penalty ``tanh(c * f * ||W_dec||)`` (Anthropic: 4.0).
        pre_act_coeff: weight of the JumpReLU pre-activation loss (Anthropic: 3e-6).
        delta_coeff: the delta-crosscoder's weight on reconstructing the *difference* between the two models'
            activations, ``||(x_B - x_A) - (x_hat_B - x_hat_A)||^2`` (Kassem et al. 2026, with BatchTopK; 0: none).
        seed: seed of the initialisation.
        shared_latents: designated shared latents (Anthropic, Feb 2025): the first ``shared_latents``
            latents have one decoder vector for all models (a single parameter, ``W_dec_tied``).
        shared_sparsity_scale: the L1 weight of the designated shared latents relative to the others
            (Anthropic suggest about 0.1 to 0.2); only the ``relu`` penalty uses it.
        exclusive_latents: dedicated feature crosscoders (Jiralerspong & Bricken 2026): per model, how many
            latents decode into that model only (the last latents, model 0's first); their decoder for every
            other model is exactly zero by construction.
        hook_point: where the activations come from, e.g. ``blocks.14.hook_resid_pre``.
        model_names: the models, in order (base first).
        dtype: parameter dtype name (``float32``, ``bfloat16``, ...).
    """

    d_model: int
    d_hidden: int
    n_models: int = 2
    activation: Activation = "relu"
    k: int | None = None
    code_normalization: CodeNormalization = "crosscoder"
    dec_init_norm: float = 0.08
    aux_k: int | None = None
    aux_k_coeff: float = 1 / 32
    dead_after_tokens: int = 1_000_000
    threshold_beta: float = 0.999
    jumprelu_bandwidth: float = 2.0
    jumprelu_init_threshold: float = 0.1
    tanh_scale: float = 4.0
    pre_act_coeff: float = 3e-6
    delta_coeff: float = 0.0
    seed: int = 0
    shared_latents: int = 0
    shared_sparsity_scale: float = 1.0
    exclusive_latents: list[int] = field(default_factory=list)
    hook_point: str | None = None
    model_names: list[str] = field(default_factory=list)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        positive_int("n_models", self.n_models)  # 1: a sparse autoencoder (the diff-SAE of helpers.methods.diff_sae)
        positive_int("d_model", self.d_model)
        positive_int("d_hidden", self.d_hidden)
        one_of("activation", self.activation, ACTIVATIONS)
        one_of("code_normalization", self.code_normalization, CODE_NORMALIZATIONS)
        if self.activation in TOP_K_ACTIVATIONS and (isinstance(self.k, bool) or not isinstance(self.k, int)
                                          or not 0 < self.k <= self.d_hidden):
            raise ValueError(f"activation {self.activation!r} needs an integer 0 < k <= d_hidden, got k={self.k!r}")
        optional_positive_int("k", self.k)
        real("dec_init_norm", self.dec_init_norm, 0, low_open=True)
        optional_positive_int("aux_k", self.aux_k)
        real("aux_k_coeff", self.aux_k_coeff, 0)
        positive_int("dead_after_tokens", self.dead_after_tokens)
        real("threshold_beta", self.threshold_beta, 0, 1)
        real("jumprelu_bandwidth", self.jumprelu_bandwidth, 0, low_open=True)
        real("jumprelu_init_threshold", self.jumprelu_init_threshold, 0, low_open=True)
        real("tanh_scale", self.tanh_scale, 0, low_open=True)
        real("pre_act_coeff", self.pre_act_coeff, 0)
        real("delta_coeff", self.delta_coeff, 0)
        if self.delta_coeff and self.n_models != 2:
            raise ValueError(f"delta_coeff weighs the difference between two models; n_models is {self.n_models}")
        if self.activation not in TOP_K_ACTIVATIONS and self.k is not None:
            raise ValueError(f"k={self.k!r} is for the topk / batchtopk activations; a {self.activation} crosscoder "
                             f"takes no k (leave it None)")
        positive_int("seed", self.seed, minimum=0)
        if self.hook_point is not None and (not isinstance(self.hook_point, str) or not self.hook_point):
            raise ValueError(f"hook_point must be a hook name such as 'blocks.14.hook_resid_pre' or None, "
                             f"got {self.hook_point!r}")
        one_of("dtype", self.dtype, tuple(DTYPES))
        if not isinstance(self.model_names, list) or not all(isinstance(n, str) for n in self.model_names):
            raise ValueError(f"model_names must be a list of strings, got {self.model_names!r}")
        if self.model_names and len(self.model_names) != self.n_models:
            raise ValueError(f"model_names has {len(self.model_names)} entries for n_models={self.n_models}")
        positive_int("shared_latents", self.shared_latents, minimum=0)
        real("shared_sparsity_scale", self.shared_sparsity_scale, 0)
        if not isinstance(self.exclusive_latents, list) or any(
                isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in self.exclusive_latents):
            raise ValueError(
                f"exclusive_latents must be a list of non-negative integers, got {self.exclusive_latents!r}")
        if self.exclusive_latents and len(self.exclusive_latents) != self.n_models:
            raise ValueError(
                f"exclusive_latents needs one count per model ({self.n_models}), got {self.exclusive_latents}")
        if self.shared_latents + sum(self.exclusive_latents) > self.d_hidden:
            raise ValueError(f"shared_latents ({self.shared_latents}) + exclusive_latents ({self.exclusive_latents}) "
                             f"exceed d_hidden ({self.d_hidden})")

    @property
    def variant(self) -> str:
        """``standard``, or the parts that make it another: ``designated-shared``, ``dedicated``, ``delta``
        joined by ``+`` (``designated-shared+dedicated``)."""
        parts = [name for name, used in (("designated-shared", self.shared_latents > 0),
                                         ("dedicated", sum(self.exclusive_latents) > 0),
                                         ("delta", self.delta_coeff > 0)) if used]
        return "+".join(parts) or "standard"

    def latent_groups(self) -> dict[str, range]:
        """Which latents play which part: ``designated shared``, ``free`` (an ordinary crosscoder's latents)
        and, for dedicated crosscoders, ``only <role>`` per model; empty groups are left out."""
        groups = {"designated shared": range(0, self.shared_latents)}
        start = self.d_hidden - sum(self.exclusive_latents)
        groups["free"] = range(self.shared_latents, start)
        for role, count in zip(model_roles(self.n_models), self.exclusive_latents):
            groups[f"only {role}"] = range(start, start + count)
            start += count
        return {name: latents for name, latents in groups.items() if len(latents)}

    def decoder_mask(self) -> torch.Tensor | None:
        """``[d_hidden, n_models]``: 1 where a latent has a free decoder vector for a model, 0 where it has none
        (an exclusive latent's other models) or where the vector is the tied one; ``None`` for the standard
        crosscoder."""
        if self.variant == "standard":
            return None
        mask = torch.ones(self.d_hidden, self.n_models)
        mask[: self.shared_latents] = 0
        for name, latents in self.latent_groups().items():
            if name.startswith("only "):
                own = [f"only {role}" for role in model_roles(self.n_models)].index(name)
                mask[latents.start:latents.stop] = 0
                mask[latents.start:latents.stop, own] = 1
        return mask

    def penalty_scales(self) -> torch.Tensor | None:
        """Per-latent factor on the L1 penalty ``[d_hidden]`` (``None`` when all are 1)."""
        if self.shared_latents == 0 or self.shared_sparsity_scale == 1.0:
            return None
        scales = torch.ones(self.d_hidden)
        scales[: self.shared_latents] = self.shared_sparsity_scale
        return scales

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        """The fields, plus ``variant`` (for reading; ignored when loading)."""
        return {**asdict(self), "variant": self.variant}

    @classmethod
    def from_dict(cls, data: dict) -> CrossCoderConfig:
        """Build a config from a dict (``cfg.json``'s fields). A key that is no field is an error naming the close
        match (``activaton`` would otherwise load silently as the default ``relu``); the bookkeeping keys a
        checkpoint writes beside the fields (``FILE_KEYS``) are skipped, and a stored ``variant`` must be the one
        the fields describe."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - FILE_KEYS)
        if unknown:
            hints = {key: difflib.get_close_matches(key, sorted(known), n=1) for key in unknown}
            described = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                  for key, hint in hints.items())
            raise ValueError(f"unknown crosscoder config keys {described}; known keys: {sorted(known)}")
        cfg = cls(**{key: value for key, value in data.items() if key in known})
        if "variant" in data and data["variant"] != cfg.variant:
            raise ValueError(f"the config says variant {data['variant']!r}, but its fields (shared_latents="
                             f"{cfg.shared_latents}, exclusive_latents={cfg.exclusive_latents}) make {cfg.variant!r}")
        return cfg
