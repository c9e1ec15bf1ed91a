"""Which latents carry a behaviour: AUROC at the response position, the planted-behaviour search, and
where a behaviour is linearly readable.

- ``auroc``: how well each column of scores separates positive from negative examples (exact, ties
  counted half, the Mann-Whitney form).
- ``behaviour_detectors``: every latent's AUROC at the response position of labelled prompts (for the
  toy pair, questions about the planted family vs the rest), joined to the latent table and sorted.
- ``probe_auroc_by_site``: the held-out AUROC of a difference-of-means probe per hook point and model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..activations.data import prompts_by_length
from ..activations.models import ModelPair
from ..crosscoder.model import CrossCoder
from ..validation import non_empty
from .behaviour import evaluation_questions
from .latents import response_activations


def auroc(scores: torch.Tensor, labels: torch.Tensor | Sequence[bool]) -> torch.Tensor:
    """Area under the ROC curve of each column of ``scores`` ``[n, n_latents]`` for bool ``labels`` ``[n]``.

    Exact: the probability that a positive outscores a negative, ties counted half. Returns ``[n_latents]``.
    """
    labels = torch.as_tensor(labels, dtype=torch.bool).flatten()
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores have {scores.shape[0]} rows but there are {labels.shape[0]} labels")
    if not torch.isfinite(scores).all():
        raise ValueError("auroc got NaN or infinite scores")
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc needs both positive and negative examples")
    columns = scores.float().T.contiguous()  # [n_latents, n]
    ordered = columns.sort(dim=1).values
    below = torch.searchsorted(ordered, columns, right=False)
    at_or_below = torch.searchsorted(ordered, columns, right=True)
    ranks = below + (at_or_below - below + 1) / 2  # average 1-based ranks
    positive_rank_sum = ranks[:, labels.to(ranks.device)].sum(dim=1)
    return (positive_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def behaviour_detectors(pair: ModelPair, crosscoder: CrossCoder, prompts: Sequence[str], labels: Sequence[bool],
                        table=None):
    """Every latent's AUROC for ``labels`` at the last token of each prompt, best first.

    Returns a pandas DataFrame indexed by latent with an ``auroc`` column, joined to ``table`` (a
    ``latent_table``) when given. On the toy pair, with ``evaluation_questions`` and ``q.planted`` as the
    labels, the first row is the latent that detects the planted refusal.
    """
    import pandas as pd

    scores = auroc(response_activations(pair, crosscoder, prompts), labels)
    detectors = pd.DataFrame({"auroc": scores.numpy()}, index=pd.Index(range(len(scores)), name="latent"))
    if table is not None:
        detectors = table.join(detectors)
    return detectors.sort_values("auroc", ascending=False, kind="stable")


def planted_detectors(pair: ModelPair, crosscoder: CrossCoder, table=None, n_other: int = 200):
    """``behaviour_detectors`` for the toy pair's planted refusal: held-out questions about the planted family
    (positive) and ``n_other`` others, scored at the ``:`` of ``Assistant:``. The first row is the planted
    latent. Notebooks 03, 05 and 06 all find it this way."""
    questions = evaluation_questions("heldout", n_other=n_other)
    return behaviour_detectors(pair, crosscoder, [q.prompt for q in questions], [q.planted for q in questions], table)


@torch.no_grad()
def last_token_activations(pair: ModelPair, prompts: Sequence[str],
                           hook_points: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each model's activation at the last token of each prompt, per hook:
    ``{hook: [n_prompts, n_models, d_model]}``."""
    result = {hook: torch.zeros(len(prompts), len(pair.models), pair.d_model) for hook in hook_points}
    for indices, tokens in prompts_by_length(pair.tokenizer, prompts, pair.device):
        for m, model in enumerate(pair.models):
            _, cache = model.run_with_cache(tokens, names_filter=list(hook_points))
            for hook in hook_points:
                result[hook][indices, m] = cache[hook][:, -1].float().cpu()
    return result


def probe_auroc_by_site(pair: ModelPair, fit_prompts: Sequence[str], fit_labels: Sequence[bool],
                        test_prompts: Sequence[str], test_labels: Sequence[bool], hook_points: Sequence[str]):
    """Where a behaviour is linearly readable: per hook point and model, the held-out AUROC of a
    difference-of-means probe (fitted on ``fit_prompts``) at the last prompt token.

    Returns a pandas DataFrame, one row per hook point, one column per model role (``base``, ``chat``).
    """
    import pandas as pd

    fit_y = torch.as_tensor(fit_labels, dtype=torch.bool)
    test_y = torch.as_tensor(test_labels, dtype=torch.bool)
    for name, prompts, labels in (("fit", fit_prompts, fit_y), ("test", test_prompts, test_y)):
        if len(prompts) != len(labels) or labels.all() or not labels.any():
            raise ValueError(f"{name}_labels must label each of the {len(prompts)} {name} prompts, with both classes "
                             f"present; got {len(labels)} labels, {int(labels.sum())} True")
    hook_points = non_empty("hook_points", hook_points)
    fit = last_token_activations(pair, fit_prompts, hook_points)
    test = last_token_activations(pair, test_prompts, hook_points)
    rows = {}
    for hook in hook_points:
        direction = fit[hook][fit_y].mean(0) - fit[hook][~fit_y].mean(0)  # [n_models, d_model]
        scores = torch.einsum("pmd,md->pm", test[hook], direction)
        rows[hook] = auroc(scores, test_y).tolist()
    table = pd.DataFrame.from_dict(rows, orient="index", columns=pair.roles)
    table.attrs["model_names"] = list(pair.names)
    return table
