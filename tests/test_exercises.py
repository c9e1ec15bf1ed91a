"""The exercises' checks accept right answers and reject wrong ones, naming the mistake when it is a common one."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.tutorial.exercises import (
    check_auroc,
    check_ce_recovered,
    check_latent_scaling_beta,
    check_relative_norms,
    check_sparsity_penalty,
)


def relative_norms_solution(w_dec):
    norms = w_dec.norm(dim=-1)
    return norms[:, 1] / (norms[:, 0] + norms[:, 1])


def sparsity_solution(latents, w_dec):
    return (latents * w_dec.norm(dim=-1).sum(-1)).sum(-1).mean()


def auroc_solution(scores, labels):
    positives, negatives = scores[labels], scores[~labels]
    wins = (positives[:, None] > negatives[None, :]).float() + 0.5 * (positives[:, None] == negatives[None, :]).float()
    return wins.mean()


def ce_recovered_solution(clean, spliced, ablated):
    return (ablated - spliced) / (ablated - clean)


def beta_solution(f, d, y):
    return torch.linalg.lstsq((f[:, None] * d).reshape(-1, 1).double(), y.reshape(-1, 1).double()).solution.squeeze()


@pytest.fixture(scope="module")
def trained_like():
    crosscoder = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=32, seed=4))
    with torch.no_grad():
        crosscoder.W_dec[:8, 0] *= 0.1
    crosscoder.set_normalization(torch.tensor([0.5, 2.0]))
    return crosscoder


def test_right_answers_pass(trained_like, capsys):
    check_relative_norms(relative_norms_solution, trained_like)
    check_sparsity_penalty(sparsity_solution, trained_like, torch.randn(16, 2, 8))
    labels = torch.arange(50) % 3 == 0
    check_auroc(auroc_solution, torch.randn(50) + labels, labels)
    import pandas as pd

    splices = pd.DataFrame({"clean_loss": [2.0, 2.5], "spliced_loss": [2.2, 2.6], "ablated_loss": [7.0, 7.5]},
                           index=["base", "chat"])
    check_ce_recovered(ce_recovered_solution, splices)
    check_latent_scaling_beta(beta_solution, (torch.rand(20), torch.randn(8), torch.randn(20, 8)))
    assert capsys.readouterr().out.count("✔") == 5


@pytest.mark.parametrize("check, wrong, message", [
    (check_relative_norms, lambda w: w.norm(dim=-1)[:, 0] / w.norm(dim=-1).sum(-1), "chat model on top"),
    (check_relative_norms, lambda w: w.norm(dim=-1)[:, 1] / w.norm(dim=-1)[:, 0], "in \\[0, 1\\]"),
    (check_relative_norms, lambda w: w.norm(dim=-1)[:, 1], "values differ"),
    (check_relative_norms, lambda w: relative_norms_solution(w)[None], "returned shape"),
    (check_sparsity_penalty, lambda f, w: (f * w.norm(dim=-1).sum(-1)).sum(), "average it over tokens"),
    (check_sparsity_penalty, lambda f, w: f.sum(-1).mean(), "plain L1"),
    (check_sparsity_penalty, lambda f, w: (f * w.norm(dim=-1).pow(2).sum(-1).sqrt()).sum(-1).mean(), "SAE's L2"),
    (check_auroc, lambda s, y: 1 - auroc_solution(s, y), "swapped"),
    (check_auroc, lambda s, y: (s[y][:, None] > s[~y][None, :]).float().mean(), "tie"),
    (check_ce_recovered, lambda c, s, a: (s - c) / (a - c), "1 minus it"),
    (check_ce_recovered, lambda c, s, a: 1 - (s - c) / a, "\\(ablated - clean\\)"),
    (check_latent_scaling_beta, lambda f, d, y: (f[:, None] * y).sum(0) @ d / f.pow(2).sum(), "misses \\|\\|d"),
    (check_latent_scaling_beta, lambda f, d, y: y.sum(0) @ d / (d.pow(2).sum() * f.pow(2).sum()), "weight each"),
    (check_latent_scaling_beta, lambda f, d, y: "a string", "not a number"),
])
def test_wrong_answers_are_rejected_with_a_reason(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)
