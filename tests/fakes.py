"""Deterministic stand-ins for models and sources, so buffer and trainer tests run in milliseconds."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn


class CountingTokenSource:
    """Rows of globally unique token ids (BOS = 0 first); a row's ids say exactly which tokens it holds."""

    def __init__(self, seq_len: int = 8):
        self.seq_len, self.position = seq_len, 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        body = self.seq_len - 1
        start = 1 + self.position * body
        ids = torch.arange(start, start + batch_size * body).view(batch_size, body)
        self.position += batch_size
        return torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), ids], dim=1)

    def fingerprint(self) -> dict:
        return {"kind": "counting", "seq_len": self.seq_len}

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


class EchoModel(nn.Module):
    """A 'model' whose residual stream at any layer is (token id, position, model index, ...)."""

    def __init__(self, index: int, d_model: int = 4):
        super().__init__()
        self.index, self.d_model = index, d_model
        self.cfg = SimpleNamespace(d_model=d_model, n_layers=4, d_vocab=10**9)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor, stop_at_layer: int | None = None) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1]).expand_as(tokens)
        features = [tokens.float(), positions.float(), torch.full_like(tokens, self.index).float()]
        features += [torch.ones_like(tokens).float()] * (self.d_model - 3)
        return torch.stack(features, dim=-1)


class SyntheticSource:
    """Activations ``[n, n_models, d_model]``, a fixed function of their global index (NaN after ``nan_after``)."""

    def __init__(self, n_models: int = 2, d_model: int = 8, nan_after: int | None = None, labels: dict | None = None):
        self.n_models, self.d_model, self.nan_after, self.position = n_models, d_model, nan_after, 0
        self.labels = labels or {}  # e.g. the models and hook point a real pair's harvest would name
        generator = torch.Generator().manual_seed(0)
        self.basis = torch.randn(32, n_models, d_model, generator=generator)

    def next_activations(self, n: int) -> torch.Tensor:
        index = torch.arange(self.position, self.position + n)
        codes = torch.sin(index[:, None] * 0.37 + torch.arange(32)[None, :] * 1.3).clamp_min(0)
        acts = (codes[:, :, None, None] * self.basis[None]).sum(1)  # per-row, independent of n
        if self.nan_after is not None:
            acts[index >= self.nan_after] = float("nan")
        self.position += n
        return acts

    def fingerprint(self) -> dict:
        return {"kind": "synthetic", "n_models": self.n_models, "d_model": self.d_model, "nan_after": self.nan_after,
                **self.labels}

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def tiny_trainer(checkpoint_dir, activation: str = "relu", nan_after: int | None = None, steps: int = 40,
                 **train_kwargs):
    """A small deterministic Trainer on ``SyntheticSource`` (the same one every time for the same arguments)."""
    from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
    from helpers.training.trainer import TrainConfig, Trainer

    cfg = CrossCoderConfig(d_model=8, d_hidden=32, activation=activation, k=4 if activation != "relu" else None,
                           dead_after_tokens=64, seed=1)
    settings = dict(num_tokens=32 * steps, batch_size=32, lr=1e-2, l1_coeff=0.05, log_every=1,
                    checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir)) | train_kwargs
    return Trainer(CrossCoder(cfg), tiny_buffer(nan_after), TrainConfig(**settings))


def tiny_buffer(nan_after: int | None = None):
    from helpers.activations.buffer import ShufflingBuffer

    return ShufflingBuffer(SyntheticSource(nan_after=nan_after), buffer_tokens=96, seed=3)


class GlobalBatchSlices:
    """A buffer serving this rank's slice of fixed global batches: batch ``i`` is ``SyntheticSource``'s rows
    ``[i * G, (i + 1) * G)`` for a global batch ``G = n * world_size``, and rank ``r`` gets rows
    ``[r * n, (r + 1) * n)`` of it, so every world size trains on the same global batches."""

    def __init__(self):
        from helpers.distributed import rank_and_world

        self.rank, self.world_size = rank_and_world()
        self.source, self.batches_served = SyntheticSource(), 0

    def next_batch(self, n: int) -> torch.Tensor:
        self.source.load_state_dict({"position": self.batches_served * n * self.world_size})
        self.batches_served += 1
        return self.source.next_activations(n * self.world_size)[self.rank * n : (self.rank + 1) * n]

    def fingerprint(self) -> dict:
        return {"kind": "global batch slices", "rank": self.rank, "world_size": self.world_size}

    def state_dict(self) -> dict:
        return {"batches_served": self.batches_served}

    def load_state_dict(self, state: dict) -> None:
        self.batches_served = state["batches_served"]
