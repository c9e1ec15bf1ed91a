"""End-to-end recipes: a model pair -> token source -> buffer -> trained crosscoder, and the toy release.

These wire the pieces of ``data``, ``buffer``, ``crosscoder`` and ``training`` together the way the
tutorials use them; each piece can also be used on its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .buffer import HarvestingSource, ShufflingBuffer, estimate_scale_factors
from .checkpoints import save
from .crosscoder import CrossCoder, CrossCoderConfig
from .data import HFTokenSource, ToyTokenSource
from .models import ModelPair
from .training import TrainConfig, Trainer

REPLICATION_DATASET = "ckkissane/pile-lmsys-mix-1m-tokenized-gemma-2"
PACKAGED_TOY_RELEASE = Path(__file__).parent / "assets" / "toy_release"
TOY_RELEASE_CONFIG = dict(d_hidden=2048, activation="relu", dec_init_norm=0.08, seed=0)
TOY_RELEASE_TRAINING = dict(num_tokens=1_228_800, batch_size=2048, lr=2e-3, l1_coeff=2.0, log_every=20)


def token_source_for(pair: ModelPair, pair_name: str, seq_len: int, seed: int = 0):
    """The default token source of a pair: the toy corpus mix, or the replication's Pile + LmSys mix."""
    if pair_name == "toy":
        return ToyTokenSource(pair.tokenizer, seq_len=seq_len, seed=seed)
    return HFTokenSource(REPLICATION_DATASET, pair.tokenizer, seq_len=seq_len, column="input_ids")


def make_buffer(pair: ModelPair, token_source, buffer_tokens: int, storage_dtype: str = "float32",
                model_batch_size: int = 32, seed: int = 0) -> ShufflingBuffer:
    """A shuffling buffer harvesting ``pair`` at its hook point from ``token_source``."""
    if pair.hook_point is None:
        raise ValueError("the pair has no hook point; load it with load_model_pair(..., hook_point=...)")
    source = HarvestingSource(pair.models, token_source, pair.hook_point, model_batch_size=model_batch_size)
    return ShufflingBuffer(source, buffer_tokens=buffer_tokens, storage_dtype=storage_dtype, seed=seed)


def new_crosscoder(pair: ModelPair, buffer: ShufflingBuffer, scale_tokens: int = 50_000, **cfg_kwargs) -> CrossCoder:
    """A freshly initialised crosscoder for ``pair`` whose scale factors are estimated on ``scale_tokens``
    activations drawn from the buffer's source (so they are not used for training)."""
    cfg = CrossCoderConfig(d_model=pair.d_model, n_models=len(pair.models), hook_point=pair.hook_point,
                           model_names=list(pair.names), **cfg_kwargs)
    crosscoder = CrossCoder(cfg)
    crosscoder.set_normalization(estimate_scale_factors(buffer.source, scale_tokens))
    return crosscoder


def build_toy_release(out_dir: str | Path = PACKAGED_TOY_RELEASE, seq_len: int = 128) -> Path:
    """Train the toy release: an L1 crosscoder, 2,048 latents, at ``blocks.3.hook_resid_post`` (the output
    of the toy pair's last block, where the planted refusal is readable; see notebook 03)."""
    from .models import load_model_pair

    torch.manual_seed(0)
    pair = load_model_pair("toy")
    buffer = make_buffer(pair, token_source_for(pair, "toy", seq_len), buffer_tokens=131_072)
    crosscoder = new_crosscoder(pair, buffer, **TOY_RELEASE_CONFIG)
    trainer = Trainer(crosscoder, buffer, TrainConfig(**TOY_RELEASE_TRAINING))
    history = trainer.train()
    final = history[-1]
    metrics = {key: round(final[key], 4) for key in ("l0", "explained_variance", "explained_variance_0",
                                                     "explained_variance_1", "dead_fraction", "seconds")}
    return save(crosscoder, out_dir, extra_cfg={"train_config": TOY_RELEASE_TRAINING, "final_metrics": metrics})


def toy_release_path() -> Path:
    """The toy release's folder: the packaged one, else a cached build (trained on first use)."""
    if (PACKAGED_TOY_RELEASE / "crosscoder.safetensors").is_file():
        return PACKAGED_TOY_RELEASE
    cached = Path(os.environ.get("CROSSCODER_CACHE", Path.home() / ".cache" / "crosscoder-helpers")) / "toy_release"
    if not (cached / "crosscoder.safetensors").is_file():
        build_toy_release(cached)
    return cached


def activation_batches(pair: ModelPair, pair_name: str, n_tokens: int, batch_size: int = 4096, seq_len: int = 128,
                       seed: int = 1) -> Iterator[torch.Tensor]:
    """``n_tokens`` raw activations of ``pair`` at its hook point in batches ``[batch, n_models, d_model]``.

    Drawn from the pair's token source with a different seed from training's (0), BOS dropped, in
    stream order (no shuffling: for statistics, not for training).
    """
    source = HarvestingSource(pair.models, token_source_for(pair, pair_name, seq_len, seed=seed), pair.hook_point)
    for start in range(0, n_tokens, batch_size):
        yield source.next_activations(min(batch_size, n_tokens - start))
