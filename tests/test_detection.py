"""AUROC, template masks and top activations against brute-force computations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from helpers.activations.models import ModelPair
from helpers.analysis.detection import auroc
from helpers.analysis.latents import TopActivations, encode_tokens, template_mask, template_share, top_activations
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

from .fakes import EchoModel


def brute_force_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    positives, negatives = scores[labels], scores[~labels]
    wins = sum(float(p > n) + 0.5 * float(p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_auroc_matches_pairwise_count_with_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (30, 5), generator=generator).float()  # many ties
    scores[:, 4] = 0  # a latent that never fires: 0.5
    labels = torch.rand(30, generator=generator) < 0.4
    result = auroc(scores, labels)
    for column in range(5):
        assert result[column].item() == pytest.approx(brute_force_auroc(scores[:, column], labels))
    assert result[4].item() == 0.5
    assert auroc(labels.float() * 2, labels).item() == 1.0
    with pytest.raises(ValueError, match="both positive and negative"):
        auroc(scores, torch.ones(30, dtype=torch.bool))
    with pytest.raises(ValueError, match="30 rows but there are 3 labels"):
        auroc(scores, labels[:3])


def test_template_mask_marks_exactly_the_template(toy_tokenizer):
    text = "def f(x):\n    return x\nUser: What does os.getcwd do?\nAssistant: I'm sorry.\n"
    ids = torch.tensor([toy_tokenizer(text)["input_ids"]])
    mask = template_mask(ids, toy_tokenizer)
    marked = toy_tokenizer.decode(ids[0][mask[0]].tolist())
    assert marked == "User:\nAssistant:"


def echo_pair(d_model: int = 4) -> ModelPair:
    return ModelPair(models=[EchoModel(0, d_model), EchoModel(1, d_model)], names=["a", "b"],
                     tokenizer=SimpleNamespace(bos_token_id=0), hook_point="blocks.1.hook_resid_pre")


def test_top_activations_match_brute_force():
    pair = echo_pair()
    crosscoder = CrossCoder(CrossCoderConfig(d_model=4, d_hidden=6, seed=1, hook_point="blocks.1.hook_resid_pre"))
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randint(1, 50, (3, 7), generator=generator) for _ in range(3)]
    for batch in batches:
        batch[:, 0] = 0  # BOS
    latents = [0, 2, 5]
    top = top_activations(pair, crosscoder, batches, latents, n_top=4)
    values, positions, tokens = top.values, top.positions, top.tokens
    everything = torch.cat([encode_tokens(pair, crosscoder, batch) for batch in batches])  # [9, 7, 6]
    assert torch.equal(tokens, torch.cat(batches))
    assert (everything[:, 0] == 0).all(), "BOS positions are zeroed"
    for row, latent in enumerate(latents):
        expected = everything[..., latent].flatten().topk(4).values
        assert torch.allclose(values[row], expected)
        found = everything[positions[row, :, 0], positions[row, :, 1], latent]
        assert torch.allclose(found, values[row])


def test_template_share_counts_fired_slots_only():
    tokens = torch.tensor([[5, 1, 2, 5]])
    tokenizer = lambda text, add_special_tokens=False: {"input_ids": [1, 2]}  # noqa: E731
    values = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    positions = torch.tensor([[[0, 1], [0, 0], [0, 2]], [[0, 3], [0, 1], [0, 1]], [[0, 0], [0, 0], [0, 0]]])
    share = template_share(TopActivations([0, 1, 2], values, positions, tokens), tokenizer)
    assert share[0].item() == pytest.approx(2 / 3) and share[1].item() == 0.0 and share[2].isnan()
