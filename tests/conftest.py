"""Shared fixtures: small crosscoders and activations, all built locally."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

from .shared import built_once, shared_folder


@pytest.fixture(scope="session")
def rehearsal_home(tmp_path_factory, worker_id: str) -> Path:
    """The offline Hub rehearsal (``helpers.builders.rehearsal``), built once for all pytest-xdist workers."""
    from helpers.builders.rehearsal import build

    home = shared_folder(tmp_path_factory, worker_id) / "rehearsal-hf"
    return built_once(home / "registry.yaml", lambda _: build(home)).parent  # the registry is written last


@pytest.fixture
def small_cfg() -> CrossCoderConfig:
    return CrossCoderConfig(d_model=16, d_hidden=48, seed=3)


@pytest.fixture
def trained_like(small_cfg: CrossCoderConfig) -> CrossCoder:
    """A crosscoder with non-trivial biases and scale factors (as if trained)."""
    crosscoder = CrossCoder(small_cfg)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        crosscoder.b_enc.copy_(torch.randn(small_cfg.d_hidden, generator=generator) * 0.05)
        crosscoder.b_dec.copy_(torch.randn(2, small_cfg.d_model, generator=generator) * 0.1)
        crosscoder.W_enc.add_(torch.randn(crosscoder.W_enc.shape, generator=generator) * 0.05)
    crosscoder.set_normalization([0.5, 2.0], torch.randn(2, small_cfg.d_model, generator=generator))
    return crosscoder


@pytest.fixture
def activations() -> torch.Tensor:
    """Raw activations ``[64, 2, 16]`` with different per-model scales."""
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(64, 2, 16, generator=generator)
    return x * torch.tensor([3.0, 0.7])[None, :, None]


@pytest.fixture(scope="session")
def toy_pair():
    """The toy model pair at its default hook point (loaded once per test session)."""
    from helpers.activations.models import load_model_pair

    return load_model_pair("toy")


@pytest.fixture(scope="session")
def toy_tokenizer(toy_pair):
    return toy_pair.tokenizer
