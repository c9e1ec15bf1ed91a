"""Decoder geometry, the per-latent table and the taxonomy, against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.analysis.figures import norm_cosine_scatter, relative_norm_histogram, shared_cosine_histogram
from helpers.analysis.norms import (
    CLASSES,
    Thresholds,
    decoder_cosines,
    delta_norms,
    encoder_cosines,
    latent_statistics,
    latent_table,
    relative_norms,
    taxonomy_counts,
)


def set_decoder_norms(crosscoder, base_norms, chat_norms):
    """Rescale each latent's decoder vectors to the given per-model norms."""
    with torch.no_grad():
        w = crosscoder.W_dec
        w /= w.norm(dim=-1, keepdim=True)
        w[:, 0] *= torch.tensor(base_norms)[:, None]
        w[:, 1] *= torch.tensor(chat_norms)[:, None]


def test_norm_landmarks_and_formulas(small_cfg):
    from helpers.crosscoder.model import CrossCoder

    crosscoder = CrossCoder(small_cfg)
    base = [1.0, 0.0, 1.0, 1.0, 2.0] + [1.0] * 43
    chat = [0.0, 1.0, 1.0, 2.0, 1.0] + [1.0] * 43
    set_decoder_norms(crosscoder, base, chat)
    relative, delta = relative_norms(crosscoder), delta_norms(crosscoder)
    assert relative[:5].tolist() == pytest.approx([0.0, 1.0, 0.5, 2 / 3, 1 / 3], abs=1e-6)
    # delta = ((chat - base) / max + 1) / 2: chat twice base -> 0.75, base twice chat -> 0.25
    assert delta[:5].tolist() == pytest.approx([0.0, 1.0, 0.5, 0.75, 0.25], abs=1e-6)


def test_cosines_match_direct_and_ignore_folding(trained_like):
    w_dec, w_enc = trained_like.W_dec.detach(), trained_like.W_enc.detach()
    j = 5
    expected_dec = (w_dec[j, 0] @ w_dec[j, 1]) / (w_dec[j, 0].norm() * w_dec[j, 1].norm())
    expected_enc = (w_enc[0, :, j] @ w_enc[1, :, j]) / (w_enc[0, :, j].norm() * w_enc[1, :, j].norm())
    assert decoder_cosines(trained_like)[j].item() == pytest.approx(expected_dec.item(), abs=1e-6)
    assert encoder_cosines(trained_like)[j].item() == pytest.approx(expected_enc.item(), abs=1e-6)
    before = (relative_norms(trained_like), decoder_cosines(trained_like), encoder_cosines(trained_like))
    trained_like.fold_scaling()
    after = (relative_norms(trained_like), decoder_cosines(trained_like), encoder_cosines(trained_like))
    for b, a in zip(before, after):
        assert torch.allclose(b, a, atol=1e-5)


def test_latent_statistics_match_direct(trained_like, activations):
    batches = [activations[:40], activations[40:]]
    stats = latent_statistics(trained_like, batches)
    latents = trained_like.encode(activations).detach()
    assert stats.n_tokens == 64
    assert torch.allclose(stats.frequency, (latents > 0).float().mean(0))
    assert torch.allclose(stats.max_activation, latents.max(0).values)
    active_mean = latents.sum(0) / (latents > 0).sum(0).clamp(min=1)
    assert torch.allclose(stats.mean_active_activation, active_mean, atol=1e-6)
    with pytest.raises(ValueError, match="no activations"):
        latent_statistics(trained_like, [])


def test_taxonomy_counts_and_thresholds(small_cfg):
    from helpers.crosscoder.model import CrossCoder

    crosscoder = CrossCoder(small_cfg)
    # delta norms: 0, 0.05 (base-only), 0.35 (unclassified; shared under the replication's band),
    # 0.5 (shared), 0.95 and 1 (chat-only); the rest shared
    chat_over_base = [0.0, 0.1, 0.7, 1.0, 1 / 0.1, math.inf]
    base = [1.0 if math.isfinite(r) else 0.0 for r in chat_over_base] + [1.0] * 42
    chat = [r if math.isfinite(r) else 1.0 for r in chat_over_base] + [1.0] * 42
    set_decoder_norms(crosscoder, base, chat)
    frequency = torch.full((48,), 0.01)
    frequency[-1] = 0.0
    stats = latent_statistics(crosscoder, [torch.randn(8, 2, 16)])
    stats.frequency = frequency
    table = latent_table(crosscoder, stats)
    counts = taxonomy_counts(table)
    assert set(counts) == set(CLASSES) and sum(counts.values()) == 48
    assert counts == {"shared": 42, "base-only": 2, "chat-only": 2, "dead": 1, "unclassified": 1}
    wide = taxonomy_counts(latent_table(crosscoder, stats, thresholds=Thresholds.replication()))
    assert wide["shared"] == 43 and wide["unclassified"] == 0
    assert list(table.columns[:6]) == ["norm_base", "norm_chat", "relative_norm", "delta_norm", "decoder_cosine",
                                       "encoder_cosine"]
    with pytest.raises(ValueError, match="thresholds must satisfy"):
        Thresholds(chat_only=0.5)
    stats.frequency = frequency[:10]
    with pytest.raises(ValueError, match="statistics cover 10 latents"):
        latent_table(crosscoder, stats)


def test_figures_have_the_replications_look(trained_like):
    table = latent_table(trained_like, thresholds=Thresholds.replication())
    histogram = relative_norm_histogram(table["relative_norm"])
    assert histogram.data[0].xbins.size == pytest.approx(1 / 200)
    assert list(histogram.layout.xaxis.tickvals) == [0, 0.25, 0.5, 0.75, 1.0]
    cosine = shared_cosine_histogram(table)
    assert cosine.layout.yaxis.type == "log"
    assert len(cosine.data[0].x) == int((table["class"] == "shared").sum())
    scatter = norm_cosine_scatter(table)
    assert sum(len(trace.x) for trace in scatter.data) == len(table)


def test_chat_leaning_latents_are_the_chat_only_ones_or_the_closest(capsys):
    import pandas as pd

    from helpers.analysis.norms import chat_leaning_latents

    table = pd.DataFrame({"delta_norm": [0.95, 0.5, 0.99, 0.92, 0.7], "frequency": [0.1, 0.2, 0.0, 0.3, 0.1],
                          "class": ["chat-only", "shared", "dead", "chat-only", "unclassified"]})
    assert chat_leaning_latents(table) == [0, 3], "chat-only latents that fired, most chat-leaning first"
    close_pair = table.assign(**{"class": ["shared", "shared", "dead", "unclassified", "unclassified"]})
    assert chat_leaning_latents(close_pair, n_fallback=2) == [0, 3]
    assert "no latent passes the chat-only threshold" in capsys.readouterr().out
