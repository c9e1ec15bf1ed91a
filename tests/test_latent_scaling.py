"""Latent Scaling against the paper's own formulas and against a brute-force least-squares solve.

The paper's code (science-of-finetuning/sparsity-artifacts-crosscoders, ``tools/latent_scaler/
closed_form.py`` ``closed_form_scalars`` and ``scripts/compute_scalers.py`` ``load_*`` targets) is
re-implemented here independently, in float64, following its structure: per batch
``A += Y^T f`` (``Y`` one target per latent), ``C += sum f^2``; at the end ``D = ||d||^2``,
``B = diag(d^T A)``, ``beta = B / (C * D)``; the fitted vectors ``d`` are the chat decoders.
"""

from __future__ import annotations

import pytest
import torch

from helpers.analysis.scaling import TARGETS, latent_scaling, scaling_flags


def brute_force_beta(crosscoder, x_raw, latent, model, target, vector_model=1):
    """Solve min_beta ||beta * f d - y||^2 with torch.linalg.lstsq on the stacked tokens (float64)."""
    with torch.no_grad():
        x = crosscoder.normalize(x_raw).double()
        codes = crosscoder.encode(x_raw).double()
        vectors = crosscoder.decoder_vectors(normalized=True).double()
        reconstruction = codes @ vectors.flatten(1) + crosscoder.b_dec.double().flatten()
        reconstruction = reconstruction.view_as(x)
        f = codes[:, latent]
        own = f[:, None] * vectors[latent, model]
        y = {"activation": x[:, model], "error": x[:, model] - reconstruction[:, model] + own,
             "reconstruction": reconstruction[:, model]}[target]
        design = (f[:, None] * vectors[latent, vector_model]).reshape(-1, 1)
        return torch.linalg.lstsq(design, y.reshape(-1, 1)).solution.item()


def test_closed_form_matches_lstsq(trained_like, activations):
    latents = [i for i in range(48) if (trained_like.encode(activations)[:, i] > 0).sum() >= 2][:6]
    assert len(latents) >= 3
    batches = [activations[:25], activations[25:50], activations[50:]]
    table = latent_scaling(trained_like, batches, latents, progress=False)
    for latent in latents:
        for target in TARGETS:
            for model, name in enumerate(("base", "chat")):
                expected = brute_force_beta(trained_like, activations, latent, model, target)
                assert table.loc[latent, f"beta_{target}_{name}"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert table.loc[latent, "nu_err"] == pytest.approx(
            table.loc[latent, "beta_error_base"] / table.loc[latent, "beta_error_chat"])


def remove_latents(activation, latent_activations, latent_vectors):
    """The paper's helper: per latent j, ``activation - f_j d_j``.

    Returns ``[L, N, d]`` for activation ``[N, d]``, latent activations ``[N, L]`` and vectors ``[L, d]``."""
    return activation[None] - latent_activations.T[..., None] * latent_vectors[:, None, :]


def paper_targets(x, reconstruction, f, base_decoder, chat_decoder):
    """The six ``load_{base,chat}_{activation,error,reconstruction}`` targets (one ``[N, d]`` or ``[L, N, d]`` each)."""
    return {
        ("activation", "base"): x[:, 0],
        ("activation", "chat"): x[:, 1],
        ("error", "base"): x[None, :, 0] - remove_latents(reconstruction[:, 0], f, base_decoder),
        ("error", "chat"): x[None, :, 1] - remove_latents(reconstruction[:, 1], f, chat_decoder),
        ("reconstruction", "base"): reconstruction[:, 0],
        ("reconstruction", "chat"): reconstruction[:, 1],
    }


def paper_closed_form(crosscoder, batches, latents):
    """``closed_form_scalars`` for every target, float64, accumulated batch by batch as the paper does."""
    ids = torch.tensor(latents)
    vectors = crosscoder.decoder_vectors(normalized=True).double().detach()
    base_decoder, chat_decoder = vectors[ids, 0], vectors[ids, 1]
    A, C = {}, torch.zeros(len(latents), dtype=torch.float64)
    with torch.no_grad():
        for batch in batches:
            x = crosscoder.normalize(batch).double()
            codes = crosscoder.encode(batch).double()
            reconstruction = (codes @ vectors.flatten(1)).view_as(x) + crosscoder.b_dec.double()
            f = codes[:, ids]  # [N, L]
            for key, y in paper_targets(x, reconstruction, f, base_decoder, chat_decoder).items():
                update = (torch.einsum("lnd,nl->dl", y, f) if y.ndim == 3 else y.T @ f)  # [d, L]
                A[key] = A.get(key, 0) + update
            C += (f ** 2).sum(0)
    D = (chat_decoder ** 2).sum(1)
    return {key: (a.T * chat_decoder).sum(1) / (C * D) for key, a in A.items()}


def test_every_target_matches_the_paper_formulas(trained_like, activations):
    latents = [i for i in range(48) if (trained_like.encode(activations)[:, i] > 0).sum() >= 2][:8]
    assert len(latents) >= 4
    batches = [activations[:20], activations[20:45], activations[45:]]
    table = latent_scaling(trained_like, batches, latents, progress=False)
    expected = paper_closed_form(trained_like, batches, latents)
    for (target, role), betas in expected.items():
        ours = torch.tensor(table[f"beta_{target}_{role}"].to_numpy(), dtype=torch.float64)
        assert torch.allclose(ours, betas, rtol=1e-5, atol=1e-6), (target, role, ours, betas)
    nu_rec = expected[("reconstruction", "base")] / expected[("reconstruction", "chat")]
    assert torch.allclose(torch.tensor(table["nu_rec"].to_numpy(), dtype=torch.float64), nu_rec, rtol=1e-5)


def test_recovers_planted_scales(small_cfg):
    """Activations built as beta_m * f * d plus noise orthogonal to d: beta comes back exactly."""
    from helpers.crosscoder.model import CrossCoder

    crosscoder = CrossCoder(small_cfg)
    generator = torch.Generator().manual_seed(0)
    direction = crosscoder.W_dec[3, 1].detach()
    noise = torch.randn(200, 2, 16, generator=generator)
    noise -= (noise @ direction)[..., None] * direction / direction.dot(direction)
    strength = torch.rand(200, generator=generator) * 3
    x = noise + strength[:, None, None] * direction * torch.tensor([0.25, 1.0])[None, :, None]
    table = latent_scaling(crosscoder, [x], [3], progress=False)
    codes = crosscoder.encode(x)[:, 3].detach()
    expected = (strength * codes).sum() / codes.pow(2).sum()  # x's projection per unit of f
    assert table.loc[3, "beta_activation_chat"] == pytest.approx(expected.item(), rel=1e-4)
    assert table.loc[3, "beta_activation_base"] == pytest.approx(0.25 * expected.item(), rel=1e-4)


def test_flags_and_bad_input(trained_like, activations):
    table = latent_scaling(trained_like, [activations], [0, 1, 2], progress=False)
    table.loc[:, "nu_err"] = [0.1, 0.5, 0.1]
    table.loc[:, "nu_rec"] = [0.1, 0.1, 0.9]
    import pandas as pd

    flagged = scaling_flags(table, classes=pd.Series(["chat-only", "chat-only", "shared"], index=[0, 1, 2]))
    assert flagged["chat_specific"].tolist() == [True, False, False]
    assert flagged["complete_shrinkage"].tolist() == [False, True, False]
    assert flagged["latent_decoupling"].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="latent ids must lie"):
        latent_scaling(trained_like, [activations], [48], progress=False)
    with pytest.raises(ValueError, match="no activations"):
        latent_scaling(trained_like, [], [0], progress=False)


def test_closed_form_beta_is_the_least_squares_scale():
    from helpers.analysis.scaling import closed_form_beta

    generator = torch.Generator().manual_seed(5)
    f, d = torch.rand(50, generator=generator), torch.randn(6, generator=generator)
    y = torch.randn(50, 6, generator=generator)
    design = (f[:, None] * d).reshape(-1, 1).double()
    expected = torch.linalg.lstsq(design, y.reshape(-1, 1).double()).solution.item()
    assert closed_form_beta(f, d, y).item() == pytest.approx(expected, rel=1e-5)
