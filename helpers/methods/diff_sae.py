"""diff-SAE: a sparse autoencoder on ``chat - base`` activation differences, whose latents name what fine-tuning
added (or took away).

Aranguri, Drori and Nanda (2025); science-of-finetuning/diffing-toolkit trains it as ``sae_difference``
(``configs/diffing/method/sae_difference.yaml``: target ``difference_ftb`` = fine-tuned minus base, a BatchTopK
SAE, k = 100, expansion factor 2). Here it is a crosscoder with a single "model" whose activation is the
difference: ``DifferenceSource`` turns paired activations ``[n, 2, d_model]`` into ``[n, 1, d_model]``, and
``CrossCoder`` / ``Trainer`` do the rest (the difference is normalised to mean norm ``sqrt(d_model)`` like every
crosscoder input, where the toolkit scales to an RMS of 100; the scale does not change which latents form).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..activations.buffer import ActivationSource, HarvestingSource, ShufflingBuffer
from ..activations.data import source_fingerprint
from ..activations.models import load_model_pair
from ..crosscoder.checkpoints import save
from ..crosscoder.model import CrossCoder
from ..files import MissingAssetError
from ..registry import ASSETS
from ..training.recipes import TOY_RELEASE_TRAINING, crosscoder_for_site, token_source_for
from ..training.trainer import TrainConfig, Trainer
from ..validation import positive_int


class DifferenceSource:
    """``chat - base`` of a paired source's activations: ``[n, 1, d_model]`` (models 1 minus 0)."""

    def __init__(self, paired: ActivationSource):
        if not callable(getattr(paired, "next_activations", None)):
            raise TypeError(f"paired must serve next_activations(n) -> [n, 2, d_model] (a HarvestingSource or "
                            f"DiskCacheSource of a pair), got {type(paired).__name__}")
        self.paired = paired

    def next_activations(self, n: int) -> torch.Tensor:
        acts = self.paired.next_activations(n)
        return acts[:, 1:2] - acts[:, 0:1]

    def fingerprint(self) -> dict:
        return {"difference": "chat - base", "of": source_fingerprint(self.paired)}

    def state_dict(self) -> dict:
        return self.paired.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.paired.load_state_dict(state)


def new_diff_sae(model_names: list[str], hook_point: str, source: DifferenceSource, d_hidden: int, k: int = 100,
                 scale_tokens: int = 50_000, **cfg_kwargs) -> CrossCoder:
    """A fresh BatchTopK SAE of ``d_hidden`` latents for the differences ``source`` serves at ``hook_point``,
    normalised from ``scale_tokens`` of them (its one "model" is named ``chat - base``)."""
    if len(model_names) != 2:
        raise ValueError(f"model_names must name the base and the chat model, got {model_names!r}")
    positive_int("k", k, maximum=d_hidden)
    name = f"{model_names[1]} - {model_names[0]}"
    return crosscoder_for_site([name], hook_point, source, scale_tokens, d_hidden=d_hidden, activation="batchtopk",
                               k=k, **cfg_kwargs)


PACKAGED_DIFF_SAE = ASSETS / "toy_organisms_diff_sae"
# The toy organisms' diff-SAE: the toy releases' tokens and schedule, 1,024 latents, k = 20.
TOY_DIFF_SAE = dict(pair_name="toy-organisms", d_hidden=1024, k=20)
# The narrow pairs' (notebook 09): 512 latents, k = 20, on half the tokens, at each pair's middle layer.
PACKAGED_NARROW_READERS = ASSETS / "toy_narrow_readers"
NARROW_DIFF_SAE = dict(d_hidden=512, k=20, num_tokens=614_400)


def toy_diff_sae_path() -> Path:
    """The packaged diff-SAE of the toy organisms pair (notebook 08); a missing one names its rebuild command."""
    if not (PACKAGED_DIFF_SAE / "cfg.json").is_file():
        raise MissingAssetError(f"the toy organisms' diff-SAE is not in {PACKAGED_DIFF_SAE}. Rebuild it with "
                                "`python -m helpers.methods.diff_sae` (about 4 minutes on 2 cores).")
    return PACKAGED_DIFF_SAE


def narrow_diff_sae_path(organism: str) -> Path:
    """The packaged diff-SAE of the narrow pair of ``organism`` (``helpers.toy.narrow.NARROW_ORGANISMS``' names;
    notebook 09); a missing one names its rebuild command."""
    from ..toy.narrow import NARROW_ORGANISMS

    names = [o.name for o in NARROW_ORGANISMS]
    if organism not in names:
        raise KeyError(f"no narrow organism {organism!r}; the narrow organisms are {names}")
    folder = PACKAGED_NARROW_READERS / organism / "diff_sae"
    if not (folder / "cfg.json").is_file():
        raise MissingAssetError(f"the {organism} pair's diff-SAE is not in {folder}. Rebuild it with "
                                f"`python -m helpers.builders.narrow_readers --organism {organism}`.")
    return folder


def build_diff_sae(pair_name: str, out_dir: str | Path, d_hidden: int, k: int,
                   num_tokens: int = TOY_RELEASE_TRAINING["num_tokens"], seq_len: int = 128,
                   buffer_tokens: int = 131_072) -> Path:
    """Train a diff-SAE of ``d_hidden`` latents (BatchTopK, ``k`` annealed from 10 k) on the differences of the
    registered pair ``pair_name`` at its hook point, ``num_tokens`` of its token source with the toy releases'
    schedule (``TOY_RELEASE_TRAINING``), into ``out_dir``."""
    positive_int("num_tokens", num_tokens)
    torch.manual_seed(0)
    pair = load_model_pair(pair_name)
    paired = HarvestingSource(pair.models, token_source_for(pair, seq_len), pair.hook_point)
    differences = DifferenceSource(paired)
    sae = new_diff_sae(list(pair.names), pair.hook_point, differences, d_hidden=d_hidden, k=k)
    buffer = ShufflingBuffer(differences, buffer_tokens=buffer_tokens, seed=0)
    training = TOY_RELEASE_TRAINING | dict(l1_coeff=0.0, k_start=10 * k, k_anneal_frac=0.1, num_tokens=num_tokens)
    final = Trainer(sae, buffer, TrainConfig(**training)).train()[-1]
    metrics = {key: round(final[key], 4) for key in ("l0", "explained_variance", "dead_fraction", "seconds")}
    return save(sae, out_dir, extra_cfg={"train_config": training, "final_metrics": metrics})


if __name__ == "__main__":
    print(f"wrote {build_diff_sae(**TOY_DIFF_SAE, out_dir=PACKAGED_DIFF_SAE)}")
