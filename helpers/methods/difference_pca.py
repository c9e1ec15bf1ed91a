"""PCA of activation differences: the main directions along which ``chat - base`` varies over ordinary text.

As science-of-finetuning/diffing-toolkit's ``pca`` method (target ``difference_ftb``: fine-tuned minus base): the
principal components of the per-token differences at one site (centred, as a PCA is), each read here through the
chat model's logit lens in both signs (a component's sign is arbitrary).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..activations.models import ModelPair, check_hook_point
from ..activations.sites import harvest
from ..validation import instance, positive_int
from .difference_lens import lens_probabilities, middle_site


@dataclass
class DifferencePCA:
    """``components [k, d_model]`` (unit rows, by explained variance), ``explained_variance_ratio [k]``, the mean
    difference ``mean [d_model]`` that was removed, at ``hook_point``, over ``n_tokens`` positions."""

    components: torch.Tensor
    explained_variance_ratio: torch.Tensor
    mean: torch.Tensor
    hook_point: str
    n_tokens: int

    def logit_lens(self, pair: ModelPair, k: int = 10):
        """Each component's ``k`` top tokens through the chat model's logit lens, for ``+c`` and ``-c``: a pandas
        DataFrame, one row per component."""
        import pandas as pd

        positive_int("k", k)
        rows = []
        for index, component in enumerate(self.components):
            probabilities = lens_probabilities(pair.models[-1], component)
            tokens = [pair.tokenizer_of(1).convert_ids_to_tokens(p.topk(k).indices.tolist()) for p in probabilities]
            rows.append({"component": index, "explained": float(self.explained_variance_ratio[index]),
                         "tokens (+)": " ".join(tokens[0]), "tokens (-)": " ".join(tokens[1])})
        return pd.DataFrame(rows)


@torch.no_grad()
def difference_pca(pair: ModelPair, token_batches: Iterable[torch.Tensor], n_components: int = 10,
                   hook_point: str | None = None, progress: bool = True) -> DifferencePCA:
    """PCA of ``chat - base`` activations at ``hook_point`` (default: the middle layer, ``middle_site``) over every
    non-BOS position of ``token_batches`` (``[batch, seq]`` each, BOS first)."""
    instance("pair", pair, ModelPair)
    positive_int("n_components", n_components, maximum=int(pair.models[0].cfg.d_model))
    hook_point = hook_point or middle_site(pair.models[0])
    for model in pair.models:
        check_hook_point(model, hook_point)
    differences = []
    for tokens in tqdm(token_batches, desc="activation differences", disable=not progress):
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError("token_batches must hold token tensors [batch, seq >= 2] (BOS first)")
        acts = harvest(pair.models[:2], tokens, hook_point)[:, 1:].double()  # [batch, seq - 1, 2, d_model]
        differences.append((acts[:, :, 1] - acts[:, :, 0]).flatten(0, 1).cpu())
    if not differences:
        raise ValueError("difference_pca got no tokens")
    data = torch.cat(differences)
    if data.shape[0] <= n_components:
        raise ValueError(f"{data.shape[0]} positions are too few for {n_components} components")
    mean = data.mean(0)
    _, singular, right = torch.linalg.svd(data - mean, full_matrices=False)
    variance = singular ** 2
    return DifferencePCA(components=right[:n_components].float(),
                         explained_variance_ratio=(variance[:n_components] / variance.sum()).float(),
                         mean=mean.float(), hook_point=hook_point, n_tokens=data.shape[0])
