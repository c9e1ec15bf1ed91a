"""Helpers for the crosscoder model-diffing tutorials.

The package is laid out by job, bottom to top, and imports run only upward through this list (``tests/test_layout.py``):

- leaves: ``registry`` (pairs and releases as data), ``files``, ``dtypes``, ``validation``, ``distributed``;
- ``toy/``: the toy world as data and where its shipped models live;
- ``crosscoder/``: the crosscoder, its sparse step, files and releases;
- ``activations/``: token sources, model pairs, hook points, buffers and disk caches, the diff;
- ``training/``: trainer, run folders, recipes, the command line, the GPU plan;
- ``analysis/``: norms and taxonomy, latents, Latent Scaling, detection, evals, steering, dashboards, figures;
- ``methods/``: other diffing methods and the scoreboard;
- ``builders/``: the toy pair's and the Hub rehearsal's builders;
- ``tutorial/``: the notebooks' setup, exercises and live view.

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
    "CrossCoder": "crosscoder.model",
    "CrossCoderConfig": "crosscoder.config",
    "CrossCoderLosses": "crosscoder.model",
    "save": "crosscoder.checkpoints",
    "load": "crosscoder.checkpoints",
    "CheckpointError": "crosscoder.checkpoints",
    # the registry, releases, pairs and the diff
    "PAIRS": "registry",
    "RELEASES": "registry",
    "Pair": "registry",
    "Release": "registry",
    "register_pair": "registry",
    "register_release": "registry",
    "from_pretrained": "crosscoder.releases",
    "push_to_hub": "crosscoder.releases",
    "list_releases": "crosscoder.releases",
    "load_release": "crosscoder.releases",
    "release_folder": "crosscoder.releases",
    "training_record": "crosscoder.releases",
    "get_release": "registry",
    "get_pair": "registry",
    "ModelPair": "activations.models",
    # two tokenizers: pairing activations where the tokenizations line up
    "AlignedHarvestingSource": "activations.alignment",
    "AlignmentError": "activations.alignment",
    "aligned_positions": "activations.alignment",
    "alignment_report": "activations.alignment",
    "last_token_pairs": "activations.alignment",
    "token_end_offsets": "activations.alignment",
    "ModelPairError": "activations.models",
    "load_model_pair": "activations.models",
    "Diff": "activations.diff",
    "load_diff": "activations.diff",
    "check_compatible": "activations.diff",
    "HookPointMismatchError": "activations.diff",
    # data and training
    "token_source_for": "training.recipes",
    "activation_batches": "training.recipes",
    "make_buffer": "training.recipes",
    "new_crosscoder": "training.recipes",
    "crosscoder_for_site": "training.recipes",
    "TokenShard": "activations.data",
    "TrainConfig": "training.config",
    "LiveTrainingView": "tutorial.live_view",
    "plan_for_pair": "training.gpu_plan",
    "Trainer": "training.trainer",
    "harvest": "activations.sites",
    # analysis
    "relative_norms": "analysis.norms",
    "delta_norms": "analysis.norms",
    "latent_statistics": "analysis.norms",
    "latent_table": "analysis.norms",
    "taxonomy_counts": "analysis.norms",
    "Thresholds": "analysis.norms",
    "latent_scaling": "analysis.scaling",
    "scaling_flags": "analysis.scaling",
    "behaviour_detectors": "analysis.detection",
    "planted_detectors": "analysis.detection",
    "auroc": "analysis.detection",
    "probe_auroc_by_site": "analysis.detection",
    "top_activations": "analysis.latents",
    "template_share": "analysis.latents",
    "template_mask": "analysis.latents",
    "response_activations": "analysis.latents",
    # evals
    "reconstruction_metrics": "analysis.evals",
    "splice_metrics": "analysis.evals",
    "replication_table": "analysis.evals",
    "latent_ablation_effects": "analysis.evals",
    "causal_summary": "analysis.evals",
    "ablated_logits_fn": "analysis.interventions",
    "spliced_logits_fn": "analysis.interventions",
    "EditedRun": "activations.runs",
    "compare_crosscoders": "analysis.comparison",
    # steering
    "latent_direction": "analysis.steering",
    "steered_logits_fn": "analysis.steering",
    "steering_curve": "analysis.steering",
    "vector_logits_fn": "analysis.steering",
    # other diffing methods
    "token_kl": "methods.token_divergence",
    "prompt_kl": "methods.token_divergence",
    "organism_rates": "analysis.behaviour",
    "organism_rates_of": "analysis.behaviour",
    "greedy_continuations": "analysis.behaviour",
    "activation_difference_lens": "methods.difference_lens",
    "DifferenceSource": "methods.diff_sae",
    "new_diff_sae": "methods.diff_sae",
    # behaviour of the toy pair
    "evaluation_questions": "analysis.behaviour",
    "refusal_table": "analysis.behaviour",
    "compare_refusals": "analysis.behaviour",
    "side_by_side": "analysis.behaviour",
    # dashboards
    "gather_aligned_dashboards": "analysis.aligned_dashboards",
    "gather_dashboards": "analysis.dashboards",
    "save_html": "analysis.dashboards",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
