"""``CrossCoderConfig``: everything that fixes a crosscoder's architecture, validated on construction.

Training knobs live in ``helpers.training.TrainConfig``. A config is what ``cfg.json`` stores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import torch

from .dtypes import DTYPES

Activation = Literal["relu", "topk", "batchtopk"]
CodeNormalization = Literal["crosscoder", "sae", "none"]
ACTIVATIONS: tuple[str, ...] = ("relu", "topk", "batchtopk")
CODE_NORMALIZATIONS: tuple[str, ...] = ("crosscoder", "sae", "none")


@dataclass
class CrossCoderConfig:
    """Everything that fixes a crosscoder's architecture (training knobs live in ``TrainConfig``).

    Attributes:
        d_model: width of each model's activation at the hook point.
        d_hidden: number of latents (dictionary size).
        n_models: number of models; index 0 is the base model (A), 1 the fine-tuned model (B).
        activation: ``relu`` (L1-penalised), ``topk`` (k per token) or ``batchtopk`` (k * batch per
            batch while training, a learned threshold at inference).
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
        seed: seed of the initialisation.
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
    seed: int = 0
    hook_point: str | None = None
    model_names: list[str] = field(default_factory=list)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.n_models < 2:
            raise ValueError(f"n_models must be >= 2, got {self.n_models}")
        if self.d_model <= 0 or self.d_hidden <= 0:
            raise ValueError(f"d_model and d_hidden must be positive, got {self.d_model}, {self.d_hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.code_normalization not in CODE_NORMALIZATIONS:
            raise ValueError(
                f"code_normalization must be one of {CODE_NORMALIZATIONS}, got {self.code_normalization!r}"
            )
        if self.activation != "relu" and (self.k is None or not 0 < self.k <= self.d_hidden):
            raise ValueError(f"activation {self.activation!r} needs 0 < k <= d_hidden, got k={self.k}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.model_names and len(self.model_names) != self.n_models:
            raise ValueError(f"model_names has {len(self.model_names)} entries for n_models={self.n_models}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CrossCoderConfig:
        """Build a config from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
