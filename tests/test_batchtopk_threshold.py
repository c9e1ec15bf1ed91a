"""BatchTopK's inference threshold: the rule of dictionary_learning's ``BatchTopKCrossCoderTrainer.update_threshold``
(science-of-finetuning/dictionary_learning, ``dictionary_learning/trainers/crosscoder.py``: the EMA, decay 0.999,
of the smallest positive decoder-norm-scaled activation the batch top-k kept, the first value taken as it is),
written out here; and when the Trainer lets a crosscoder learn it (``TrainConfig.learns_threshold_at``).
``benchmarks/batchtopk_threshold.py --peer <checkout>`` runs the peer's own code beside ours."""

from __future__ import annotations

import pytest
import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.training.config import TrainConfig

from .fakes import tiny_trainer


def peer_threshold_rule(crosscoder: CrossCoder, batches: list[torch.Tensor], k: int, beta: float) -> list[float]:
    """The peer's thresholds after each batch, from the crosscoder's fixed weights: its ``encode`` (relu of
    ``x W_enc + b_enc``, scaled by the summed decoder norms, flattened top ``k * batch``) then ``update_threshold``."""
    thresholds, threshold = [], -1.0
    with torch.no_grad():
        norms = crosscoder.W_dec.norm(dim=-1).sum(-1)  # [d_hidden]: the crosscoder code normalisation
        for x in batches:
            scaled = torch.relu(torch.einsum("bnd,ndh->bh", x, crosscoder.W_enc) + crosscoder.b_enc) * norms
            kept = scaled.flatten().topk(k * x.shape[0]).values
            smallest = kept[kept > 0].min().item()
            threshold = smallest if threshold < 0 else beta * threshold + (1 - beta) * smallest
            thresholds.append(threshold)
    return thresholds


@pytest.mark.parametrize("sparse", [True, False])
def test_our_threshold_follows_the_peers_rule(sparse):
    torch.manual_seed(0)
    cfg = CrossCoderConfig(d_model=16, d_hidden=128, activation="batchtopk", k=6, threshold_beta=0.9)
    crosscoder = CrossCoder(cfg).train()
    batches = [torch.randn(64, 2, 16) * (1 + i / 4) for i in range(6)]  # a drifting scale moves the cut-off
    expected = peer_threshold_rule(crosscoder, batches, cfg.k, cfg.threshold_beta)
    got = []
    for x in batches:
        crosscoder.losses(x, normalized=True, sparse=sparse)
        got.append(float(crosscoder.threshold))
    assert got == pytest.approx(expected, rel=1e-5)
    assert len(set(round(t, 4) for t in got)) == len(got), "the threshold moved every step"


def test_a_crosscoder_told_not_to_learn_keeps_its_threshold():
    crosscoder = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=32, activation="batchtopk", k=4)).train()
    crosscoder.learns_threshold = False
    crosscoder.losses(torch.randn(32, 2, 8), normalized=True)
    assert float(crosscoder.threshold) == -1.0


def test_the_threshold_is_learnt_after_the_start_step_as_the_peer():
    assert [TrainConfig(num_tokens=1000, batch_size=10).learns_threshold_at(s) for s in (0, 1, 99)] == [False, True,
                                                                                                         True]
    later = TrainConfig(num_tokens=1000, batch_size=10, k_start=40, threshold_start_step=5)
    assert [later.learns_threshold_at(s) for s in (5, 6)] == [False, True]


def test_the_trainer_holds_the_threshold_up_to_the_start_step(tmp_path):
    trainer = tiny_trainer(None, "batchtopk", steps=20, k_start=16, threshold_start_step=9)
    trainer.train(steps=10)  # steps 0..9
    assert float(trainer.crosscoder.threshold) == -1.0
    trainer.train(steps=1)
    assert float(trainer.crosscoder.threshold) > 0
