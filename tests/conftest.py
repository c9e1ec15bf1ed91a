"""Shared fixtures: small crosscoders and activations, all built locally."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (`-n 2`, see pyproject.toml) each worker, and the notebook kernels it starts, uses one
# thread: two single-threaded workers share 2 cores far better than two that each spin up 2 threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

import pytest
import torch

from helpers.crosscoder import CrossCoder, CrossCoderConfig

# Seconds each notebook takes alone on a 2-core CPU (README), per pair profile: the toy pair, and the Gemma-2-2B
# and own-pair rehearsals. The notebooks run first, longest first, and `--maxschedchunk 1` (pyproject.toml) hands
# tests to the pytest-xdist workers one at a time, so each worker takes the longest notebook left whenever it is
# free and the short unit tests fill in behind. (By default xdist gives each worker a quarter of its share up
# front, as one consecutive block: one worker would get every notebook while the other ran unit tests, then
# idled.) A notebook missing here runs after those listed.
NOTEBOOK_SECONDS = {
    "toy": {"06": 195, "07": 165, "02": 150, "08": 99, "05": 82, "03": 66, "04": 42, "00": 24, "01": 18},
    "gemma-2-2b": {"00": 58, "02": 48, "06": 45, "05": 24, "03": 22, "04": 19, "07": 19, "01": 12},
    "rehearsal-llama": {"02": 20, "05": 17, "04": 15},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def run_order(item: pytest.Item) -> tuple[int, int]:
        if item.nodeid.startswith("tests/test_notebooks.py::"):
            profile = item.callspec.params.get("profile", "toy")
            return 0, -NOTEBOOK_SECONDS.get(profile, {}).get(item.callspec.params["path"].name[:2], 0)
        return 1, 0

    items.sort(key=run_order)


@pytest.fixture(scope="session")
def rehearsal_home(tmp_path_factory, worker_id: str) -> Path:
    """The offline Hub rehearsal (``helpers.rehearsal``), built once for all pytest-xdist workers."""
    from filelock import FileLock

    from helpers.rehearsal import build

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if worker_id != "master" else shared
    home = shared / "rehearsal-hf"
    with FileLock(f"{home}.lock"):
        if not (home / "registry.yaml").is_file():  # written last: the build finished
            build(home)
    return home


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
