"""The shared opening of every tutorial: ``setup()``, the choice of model pair, and loading it.

The pair defaults to Gemma-2-2B where a GPU with enough memory and a Hub token exist, otherwise to the
toy pair; the notebook's ``PAIR`` variable or the environment variable ``CROSSCODER_PAIR`` overrides it
(any registered pair, your own included: ``helpers.register_pair``). ``ctx.open_diff(PAIR, **SETTINGS)``
then loads the pair's crosscoder and the pair at its hook point, with the pair's notebook knobs
(``settings`` in ``registry.yaml``) overridden by name.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from .. import __version__
from ..registry import PAIRS, RegistryError, scale_caps

GITHUB_REPO = "crosscoder-diffing/crosscoder-tutorials"
COLAB_BADGE_URL = "https://colab.research.google.com/github/{repo}/blob/main/notebooks/{filename}"
# The setup cell every notebook opens with (the hygiene test checks it is exactly this).
SETUP_CELL = f"""# Setup (safe to re-run): inside Colab, install the package; elsewhere it is installed already.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{GITHUB_REPO}"], check=True)

from helpers.tutorial import setup

ctx = setup()"""


@dataclass(frozen=True)
class NotebookContext:
    """What ``setup()`` decided: the device, whether we are in Colab, the default pair, and the name of the scale
    capping every pair's knobs (``CROSSCODER_SCALE``; empty when the pairs run at their own sizes)."""

    device: str
    in_colab: bool
    default_pair: str
    scale: str = ""

    @property
    def model_dtype(self) -> torch.dtype:
        """bfloat16 on a GPU (Gemma-2-2B's two models take 9.7 GiB instead of 19.5, see ``helpers.training.gpu_plan``),
        float32 on a CPU."""
        return torch.bfloat16 if self.device.startswith("cuda") else torch.float32

    def open_pair(self, pair: str | None = None, **settings: Any):
        """Load the chosen pair (``choose_pair(pair)``) at its release's hook point; returns
        ``(ModelPair, settings)``, the pair's notebook knobs with ``settings`` overrides applied."""
        from ..activations.models import load_model_pair

        pair_model = load_model_pair(choose_pair(pair), device=self.device, dtype=self.model_dtype)
        knobs = pair_model.profile.settings_with(**settings)
        print(f"pair {pair_model.name}: {' vs '.join(pair_model.names)} at {pair_model.hook_point}")
        return pair_model, knobs

    def open_diff(self, pair: str | None = None, release: str | None = None, **settings: Any):
        """Load the chosen pair's crosscoder (its default release, or ``release``) and the pair at the
        crosscoder's hook point: a ``Diff`` whose ``settings`` are the pair's knobs with overrides applied."""
        from ..activations.diff import load_diff

        diff = load_diff(choose_pair(pair), release=release, device=self.device, settings=settings,
                         model_dtype=self.model_dtype)
        release = diff.release.name if diff.release else "(given)"
        print(f"pair {diff.name}: {' vs '.join(diff.pair.names)} | crosscoder {release}"
              f" with {diff.crosscoder.cfg.d_hidden:,} latents at {diff.hook_point}")
        return diff


def in_colab() -> bool:
    return "google.colab" in sys.modules


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_memory_gib() -> float:
    if not torch.cuda.is_available():
        return 0.0
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def _has_hub_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def choose_pair(override: str | None = None) -> str:
    """The pair a notebook runs on: ``override`` (the notebook's ``PAIR``: a choice written in the notebook wins),
    else ``CROSSCODER_PAIR``, else the best that fits here."""
    if override is not None and (not isinstance(override, str) or not override):
        raise RegistryError(f"PAIR must be a registered pair's name or None, got {override!r}")
    environment = os.environ.get("CROSSCODER_PAIR")
    if override and environment and environment != override:
        print(f"PAIR = {override!r} in the notebook wins over CROSSCODER_PAIR={environment!r}")
    choice = override or environment
    if choice:
        if choice not in PAIRS:
            raise RegistryError(f"unknown pair {choice!r}; choose one of {sorted(PAIRS)} or register your own "
                                "with helpers.register_pair")
        return choice
    gemma = PAIRS["gemma-2-2b"]
    if gpu_memory_gib() >= gemma.min_gpu_gib and _has_hub_token():
        return "gemma-2-2b"
    return "toy"


def setup(pair: str | None = None) -> NotebookContext:
    """Print the device, package version and pair; set the plotly renderer; return the context."""
    import plotly.io as pio

    colab = in_colab()
    pio.renderers.default = "colab" if colab else "notebook_connected+plotly_mimetype"
    device = default_device()
    chosen = choose_pair(pair)
    gpu = f" ({torch.cuda.get_device_name(0)}, {gpu_memory_gib():.0f} GiB)" if device == "cuda" else ""
    print(f"helpers {__version__} | torch {torch.__version__} | device {device}{gpu} | Colab: {colab}")
    print(f"default pair: {chosen} ({', '.join(PAIRS[chosen].model_names)}); "
          "override with PAIR = '...' or CROSSCODER_PAIR")
    scale = os.environ.get("CROSSCODER_SCALE", "")
    if scale:
        print(f"scale {scale}: every pair's knobs capped at {scale_caps()} (CROSSCODER_SCALE)")
    return NotebookContext(device=device, in_colab=colab, default_pair=chosen, scale=scale)
