"""Helpers for the crosscoder model-diffing tutorials.

The public API is re-exported here and imported lazily, so ``import helpers`` is cheap; heavy
dependencies (TransformerLens, transformers, plotly) load only when a function that needs them is used.
Notebooks import from here: ``from helpers import load_diff, latent_table, ...``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    # the crosscoder and its files
    "CrossCoder": "crosscoder",
    "CrossCoderConfig": "crosscoder_config",
    "CrossCoderLosses": "crosscoder",
    "save": "checkpoints",
    "load": "checkpoints",
    "CheckpointError": "checkpoints",
    # the registry, releases, pairs and the diff
    "PAIRS": "registry",
    "RELEASES": "registry",
    "Pair": "registry",
    "Release": "registry",
    "register_pair": "registry",
    "register_release": "registry",
    "from_pretrained": "releases",
    "push_to_hub": "releases",
    "list_releases": "releases",
    "ModelPair": "models",
    "load_model_pair": "models",
    "Diff": "diff",
    "load_diff": "diff",
    "check_compatible": "diff",
    "HookPointMismatchError": "diff",
    # data and training
    "token_source_for": "recipes",
    "activation_batches": "recipes",
    "make_buffer": "recipes",
    "new_crosscoder": "recipes",
    "crosscoder_for_site": "recipes",
    "TokenShard": "data",
    "TrainConfig": "training",
    "LiveTrainingView": "live_view",
    "plan_for_pair": "gpu_plan",
    "Trainer": "training",
    "harvest": "sites",
    # analysis
    "relative_norms": "analysis",
    "delta_norms": "analysis",
    "latent_statistics": "analysis",
    "latent_table": "analysis",
    "taxonomy_counts": "analysis",
    "Thresholds": "analysis",
    "latent_scaling": "scaling",
    "scaling_flags": "scaling",
    "behaviour_detectors": "detection",
    "planted_detectors": "detection",
    "auroc": "detection",
    "probe_auroc_by_site": "detection",
    "top_activations": "latents",
    "template_share": "latents",
    "template_mask": "latents",
    # evals
    "reconstruction_metrics": "evals",
    "splice_metrics": "evals",
    "replication_table": "evals",
    "latent_ablation_effects": "evals",
    "causal_summary": "evals",
    "ablated_logits_fn": "evals",
    "compare_crosscoders": "comparison",
    # steering
    "latent_direction": "steering",
    "steered_logits_fn": "steering",
    "steering_curve": "steering",
    "vector_logits_fn": "steering",
    # other diffing methods
    "token_kl": "token_divergence",
    "prompt_kl": "token_divergence",
    "organism_rates": "behaviour",
    "activation_difference_lens": "difference_lens",
    "DifferenceSource": "diff_sae",
    "new_diff_sae": "diff_sae",
    # behaviour of the toy pair
    "evaluation_questions": "behaviour",
    "refusal_table": "behaviour",
    "compare_refusals": "behaviour",
    "side_by_side": "behaviour",
    # dashboards
    "gather_dashboards": "dashboards",
    "save_html": "dashboards",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
