"""Reconstruction metrics, CE / KL splicing and latent ablation against full forward passes with hooks."""

from __future__ import annotations

import pytest
import torch

from helpers import from_pretrained
from helpers.analysis.evals import (
    ReconstructionMetrics,
    causal_summary,
    latent_ablation_effects,
    reconstruction_metrics,
    replication_table,
    splice_metrics,
)
from helpers.analysis.interventions import ablated_logits_fn
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.training.recipes import token_source_for


@pytest.fixture(scope="module")
def release():
    return from_pretrained("toy-l3").eval()


@pytest.fixture(scope="module")
def token_batches(toy_pair):
    source = token_source_for(toy_pair, seq_len=32, seed=5)
    return [source.next_batch(4) for _ in range(2)]


def full_pass_losses(model, tokens, hook_point, replace=None):
    """Mean next-token CE of a full forward pass, the hook activation optionally replaced (TransformerLens's loss)."""
    hooks = [] if replace is None else [(hook_point, lambda act, hook: replace(act))]
    return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks).item()


@pytest.mark.parametrize("hook_point", ["blocks.3.hook_resid_post", "blocks.2.hook_resid_pre"])
def test_splice_metrics_match_full_forward_passes(toy_pair, release, token_batches, hook_point):
    if hook_point == release.cfg.hook_point:
        crosscoder = release
    else:
        crosscoder = CrossCoder(CrossCoderConfig(d_model=128, d_hidden=256, seed=0, hook_point=hook_point)).eval()
    table = splice_metrics(toy_pair.at(hook_point), crosscoder, token_batches, progress=False)
    assert list(table.index) == ["base", "chat"] and table.attrs["model_names"] == toy_pair.names
    for m, model in enumerate(toy_pair.models):
        clean = spliced = ablated = 0.0
        for tokens in token_batches:
            _, cache = model.run_with_cache(tokens, names_filter=[hook_point])
            other = toy_pair.models[1 - m].run_with_cache(tokens, names_filter=[hook_point])[1][hook_point]
            both = torch.stack([cache[hook_point], other] if m == 0 else [other, cache[hook_point]], dim=2)
            recon = crosscoder(both[:, 1:].flatten(0, 1)).view(both[:, 1:].shape)[:, :, m]
            clean += full_pass_losses(model, tokens, hook_point)
            spliced += full_pass_losses(model, tokens, hook_point, lambda a, r=recon: torch.cat([a[:, :1], r], 1))
            ablated += full_pass_losses(model, tokens, hook_point, torch.zeros_like)
        row = table.iloc[m]
        assert row["clean_loss"] == pytest.approx(clean / 2, abs=1e-4)
        assert row["spliced_loss"] == pytest.approx(spliced / 2, abs=1e-4)
        assert row["ablated_loss"] == pytest.approx(ablated / 2, abs=1e-4)
        assert row["ce_recovered"] == pytest.approx(1 - (spliced - clean) / (ablated - clean), abs=1e-4)
        assert row["n_sequences"] == 8 and row["n_tokens"] == 8 * 31
    if crosscoder is release:
        assert (table["clean_loss"] <= table["spliced_loss"]).all()
        assert (table["spliced_loss"] <= table["ablated_loss"]).all()
        assert table["ce_recovered"].between(0, 1).all() and (table["kl_spliced"] >= 0).all()


def test_reconstruction_metrics_match_direct(trained_like, activations):
    metrics = reconstruction_metrics(trained_like.eval(), [activations[:32], activations[32:]], progress=False)
    codes = trained_like.encode(activations).detach()
    assert metrics.n_tokens == 64
    assert metrics.l0 == pytest.approx((codes > 0).float().sum(-1).mean().item(), rel=1e-6)
    assert list(metrics.per_model.index) == ["base", "chat"]
    assert metrics.per_model.loc["base", "l0"] == pytest.approx(metrics.l0, rel=1e-6)  # every decoder is non-zero
    fired = (codes > 0).any(0)
    assert metrics.dead_fraction == pytest.approx(1 - fired.float().mean().item())
    frequency = (codes > 0).float().mean(0)
    assert metrics.dense_fraction == pytest.approx((frequency > 0.1).float().mean().item())
    halves = [trained_like.losses(part).explained_variance_per_model[1].item()
              for part in (activations[:32], activations[32:])]
    assert metrics.per_model.loc["chat", "explained_variance"] == pytest.approx(sum(halves) / 2, rel=1e-5)
    assert metrics.as_series()["explained_variance_chat"] == metrics.per_model.loc["chat", "explained_variance"]
    with torch.no_grad():
        trained_like.W_dec[0, 1] = 0  # a base-only latent no longer counts in model 1's L0
    changed = reconstruction_metrics(trained_like, [activations], progress=False)
    expected = changed.l0 - (codes[:, 0] > 0).float().mean().item()
    assert changed.per_model.loc["chat", "l0"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no activations"):
        reconstruction_metrics(trained_like, [], progress=False)


def test_latent_ablation_matches_a_full_pass_with_a_hook(toy_pair, release, token_batches):
    """The most frequent latent, and one that fires in only some sequences (only those are run again)."""
    from helpers.activations.sites import SplicedRunner

    tokens = token_batches[0]
    hook = release.cfg.hook_point
    acts = torch.stack([m.run_with_cache(tokens, names_filter=[hook])[1][hook] for m in toy_pair.models], dim=2)
    codes = release.encode(acts.flatten(0, 1)).view(*acts.shape[:2], -1).detach()
    codes[:, 0] = 0
    rows_fired = (codes > 0).any(1).sum(0)  # [d_hidden]: sequences each latent fired in
    partial = int(((rows_fired > 0) & (rows_fired < tokens.shape[0])).nonzero()[0])
    for latent in (int((codes > 0).sum((0, 1)).argmax()), partial):
        effects = latent_ablation_effects(toy_pair, release, [tokens], [latent], progress=False)
        active = codes[..., latent] > 0
        for m, model in enumerate(toy_pair.models):
            vector = release.decoder_vectors(normalized=False)[latent, m].detach()
            clean = model(tokens)
            contribution = codes[..., latent, None] * vector
            ablated = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook, c=contribution: a - c)])
            kl = (clean.log_softmax(-1).exp() * (clean.log_softmax(-1) - ablated.log_softmax(-1))).sum(-1)
            assert effects.iloc[0, m] == pytest.approx(kl[active].mean().item(), rel=1e-4, abs=1e-7)
            generated = ablated_logits_fn(toy_pair, release, [latent], model_index=m)(tokens)
            assert torch.allclose(generated, ablated, atol=1e-4)
        assert effects.loc[latent, "n_active"] == int(active.sum())
    runner = SplicedRunner(toy_pair.models, hook, tokens)
    some = torch.tensor([2, 0])
    assert torch.allclose(runner.run(0, lambda a: a, rows=some), runner.clean_logits(0)[some], atol=1e-5)
    for rows in (torch.tensor([], dtype=torch.long), torch.tensor([[0]]), torch.tensor([0.0])):
        with pytest.raises(ValueError, match="rows must be a non-empty 1-D tensor"):
            runner.run(0, lambda a: a, rows=rows)


def test_causal_summary():
    import pandas as pd

    effects = pd.DataFrame({"kl_base": [0.1, 0.2, 0.3, 0.01, 0.02], "kl_chat": [0.11, 0.19, 0.33, 0.5, 0.01],
                            "n_active": [5] * 5})
    classes = pd.Series(["shared", "shared", "shared", "chat-only", "chat-only"])
    summary = causal_summary(effects, classes)
    assert summary["shared_pearson"] == pytest.approx(effects["kl_base"][:3].corr(effects["kl_chat"][:3]))
    assert summary["chat_only_median_ratio"] == pytest.approx((50 + 0.5) / 2)
    assert summary["chat_only_chat_larger"] == 0.5 and summary["n_shared"] == 3


def test_replication_table_and_direction_ablation(toy_pair, release, token_batches):
    import pandas as pd

    splices = pd.DataFrame({"ce_recovered": [0.9, 0.8], "ce_delta": [0.1, 0.2]}, index=["base", "chat"])
    per_model = pd.DataFrame({"l0": [12.0, 12.0], "explained_variance": [0.7, 0.6]}, index=["base", "chat"])
    metrics = ReconstructionMetrics(n_tokens=10, l0=12.0, explained_variance=0.65, dead_fraction=0.0,
                                    dense_fraction=0.0, per_model=per_model)
    table = replication_table(metrics, splices)
    assert table.iloc[0].tolist() == [12.0, 0.9, 0.8, 0.1, 0.2, 0.7, 0.6]
    assert table.iloc[1]["L0"] == 81
    tokens = token_batches[0]
    hook = release.cfg.hook_point
    clean = toy_pair.chat(tokens)
    acts = torch.stack([m.run_with_cache(tokens, names_filter=[hook])[1][hook] for m in toy_pair.models], dim=2)
    codes = release.encode(acts.flatten(0, 1)).detach()
    latent = int((codes > 0).sum(0).argmax())
    direction = release.decoder_vectors(normalized=False)[latent, 1].detach()
    direction = direction / direction.norm()
    fires = (codes[:, latent] > 0).view(tokens.shape)
    fires[:, 0] = False

    def project(act, hook):
        return act - fires[..., None] * (act @ direction)[..., None] * direction

    expected = toy_pair.chat.run_with_hooks(tokens, fwd_hooks=[(hook, project)])
    got = ablated_logits_fn(toy_pair, release, [latent], model_index=1, mode="direction")(tokens)
    assert torch.allclose(got, expected, atol=1e-4)
    assert fires.any() and not torch.allclose(got, clean, atol=1e-3)
    with pytest.raises(ValueError, match="mode must be"):
        ablated_logits_fn(toy_pair, release, [latent], mode="zero")


def test_a_crosscoder_never_meets_a_pair_at_another_site(toy_pair, release, token_batches):
    """The L13-release-with-L14-pair mistake: every consumer refuses it instead of mixing two sites."""
    from helpers.activations.diff import HookPointMismatchError, check_compatible, load_diff
    from helpers.analysis.latents import encode_tokens

    elsewhere = toy_pair.at("blocks.2.hook_resid_pre")
    for call in (lambda: splice_metrics(elsewhere, release, token_batches, progress=False),
                 lambda: encode_tokens(elsewhere, release, token_batches[0]),
                 lambda: latent_ablation_effects(elsewhere, release, token_batches, [0], progress=False),
                 lambda: ablated_logits_fn(elsewhere, release, [0]),
                 lambda: load_diff(release, elsewhere)):
        with pytest.raises(HookPointMismatchError, match="blocks.3.hook_resid_post.*blocks.2.hook_resid_pre"):
            call()
    unsited = CrossCoder(CrossCoderConfig(d_model=128, d_hidden=16))
    with pytest.raises(HookPointMismatchError, match="records no hook point"):
        check_compatible(unsited, toy_pair)
    narrow = CrossCoder(CrossCoderConfig(d_model=64, d_hidden=16, hook_point=toy_pair.hook_point))
    with pytest.raises(HookPointMismatchError, match="width 64"):
        check_compatible(narrow, toy_pair)
    assert check_compatible(release, toy_pair) == toy_pair.hook_point


def test_splicing_in_one_row_passes_and_small_chunks_gives_the_same_numbers(toy_pair, release, token_batches,
                                                                           monkeypatch):
    """A 256,000-token vocabulary splices one 1,024-token row per re-run and takes log-probs a chunk of positions
    at a time (26 GiB -> a few on Gemma-2-2B); here the toy's logits are cut the same way and every number stays."""
    from helpers.activations import sites

    whole = splice_metrics(toy_pair, release, token_batches[:1], progress=False)
    latents = list(range(24))
    effects = latent_ablation_effects(toy_pair, release, token_batches[:1], latents, progress=False)
    assert effects["n_active"].gt(0).sum() >= 3
    row_bytes = 32 * int(toy_pair.models[0].cfg.d_vocab) * 4
    monkeypatch.setattr(sites, "SPLICE_LOGITS_BYTES", row_bytes)  # one row per pass
    monkeypatch.setattr(sites, "LOG_PROB_CHUNK_VALUES", 5 * int(toy_pair.models[0].cfg.d_vocab))  # 5 positions
    assert sites.splice_rows_per_pass(32, int(toy_pair.models[0].cfg.d_vocab), 4) == 1
    cut = splice_metrics(toy_pair, release, token_batches[:1], progress=False)
    assert cut["n_sequences"].tolist() == whole["n_sequences"].tolist() == [4, 4]
    for column in ("clean_loss", "spliced_loss", "ablated_loss", "kl_spliced"):
        assert cut[column].tolist() == pytest.approx(whole[column].tolist(), rel=1e-6, abs=1e-9), column
    cut_effects = latent_ablation_effects(toy_pair, release, token_batches[:1], latents, progress=False)
    for column in ("kl_base", "kl_chat"):
        assert cut_effects[column].tolist() == pytest.approx(effects[column].tolist(), rel=1e-6, abs=1e-9, nan_ok=True)
