"""Shared fixtures: small crosscoders and activations, all built locally."""

from __future__ import annotations

import os

# Under pytest-xdist (`-n 2`, see pyproject.toml) each worker, and the notebook kernels it starts, uses one
# thread: two single-threaded workers share 2 cores far better than two that each spin up 2 threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

import pytest
import torch

from helpers.crosscoder import CrossCoder, CrossCoderConfig

# Seconds each notebook takes alone on a 2-core CPU (README). The notebooks run first, longest first, so under
# pytest-xdist both workers start on them at once and the short unit tests fill in behind, instead of one worker
# running the last long notebooks while the other idles. A notebook missing here runs after those listed.
NOTEBOOK_SECONDS = {"06": 195, "07": 165, "02": 150, "08": 99, "05": 82, "03": 66, "04": 42, "00": 24, "01": 18}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def run_order(item: pytest.Item) -> tuple[int, int]:
        if item.nodeid.startswith("tests/test_notebooks.py::"):
            return 0, -NOTEBOOK_SECONDS.get(item.callspec.id[:2], 0)
        return 1, 0

    items.sort(key=run_order)


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
    from helpers.models import load_model_pair

    return load_model_pair("toy")


@pytest.fixture(scope="session")
def toy_tokenizer(toy_pair):
    return toy_pair.tokenizer
