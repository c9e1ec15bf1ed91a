"""How well a crosscoder reconstructs what the models compute, and what single latents do to them.

- ``reconstruction_metrics``: L0, explained variance per model, dead and dense latents, over a stream
  of activation batches.
- ``splice_metrics``: per model, the next-token loss clean, with the hook activation replaced by the
  crosscoder's reconstruction (BOS kept as is), and zero-ablated (every position, as the replication
  did); the CE delta, the fraction of CE recovered ``1 - (spliced - clean) / (ablated - clean)`` and
  ``KL(clean || spliced)``. The part of each model before the hook runs once per batch
  (``SplicedRunner``), not once per variant; and since a zero-ablated residual carries nothing of the
  tokens, the ablated logits depend only on the position: they are computed for one sequence per
  sequence length and reused (exactly equal to running every sequence).
- ``latent_ablation_effects`` / ``causal_summary``: ablate one latent (subtract its decoder
  contribution) in both models on the same inputs and compare each model's KL shift.
- ``replication_table``: the metrics in the form of the replication's results table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..activations.diff import check_compatible
from ..activations.models import ModelPair
from ..activations.sites import (
    SplicedRunner,
    chunked_kl_divergence,
    chunked_next_token_loss,
    splice_rows_per_pass,
)
from ..crosscoder.model import CrossCoder
from ..registry import model_roles
from ..validation import instance, real
from .latents import check_latent_ids, encode_positions, latent_contributions

DENSE_FREQUENCY = 0.1
# The replication's published results (Gemma-2-2B vs -IT, blocks.14.hook_resid_pre, 16,384 latents).
REPLICATION_RESULTS = {"L0": 81, "base CE recovered": 0.9543, "chat CE recovered": 0.9567, "base CE delta": 0.488,
                       "chat CE delta": 0.453, "base FVE": 0.7790, "chat FVE": 0.7756}


@dataclass
class ReconstructionMetrics:
    """Sparsity and fidelity of a crosscoder over ``n_tokens`` activations.

    Attributes:
        n_tokens: activations measured.
        l0: active latents per token.
        dead_fraction: latents that never fired; dense_fraction: latents firing on more than
            ``dense_frequency`` of tokens.
        explained_variance: the replication's per-token ``1 - ||x - x_hat||^2 / ||x - batch mean||^2``
            over both models, averaged over tokens.
        per_model: a pandas DataFrame indexed by model role (``base``, ``chat``) with ``l0`` (active latents
            with a non-zero decoder vector in that model) and ``explained_variance``; the models' real names
            are in ``per_model.attrs["model_names"]``.
    """

    n_tokens: int
    l0: float
    explained_variance: float
    dead_fraction: float
    dense_fraction: float
    per_model: Any

    def as_series(self):
        """Every number as one pandas Series (``l0_base``, ``explained_variance_chat``, ...), for display."""
        import pandas as pd

        values = {"n_tokens": self.n_tokens, "l0": self.l0, "explained_variance": self.explained_variance,
                  "dead_fraction": self.dead_fraction, "dense_fraction": self.dense_fraction}
        for role, row in self.per_model.iterrows():
            values |= {f"{column}_{role}": row[column] for column in self.per_model.columns}
        return pd.Series(values, name="value")


@torch.no_grad()
def reconstruction_metrics(crosscoder: CrossCoder, activation_batches: Iterable[torch.Tensor],
                           dense_frequency: float = DENSE_FREQUENCY, progress: bool = True) -> ReconstructionMetrics:
    """Sparsity and fidelity over raw activation batches ``[batch, n_models, d_model]`` (see
    ``ReconstructionMetrics``)."""
    import pandas as pd

    instance("crosscoder", crosscoder, CrossCoder)
    real("dense_frequency", dense_frequency, 0, 1, low_open=True)
    roles = model_roles(crosscoder.cfg.n_models)
    device = crosscoder.W_enc.device
    has_decoder = (crosscoder.decoder_norms() > 0).float()  # [d_hidden, n_models]
    fired = torch.zeros(crosscoder.cfg.d_hidden, device=device)
    l0_sum, ev_sum = 0.0, 0.0
    per_model_l0 = torch.zeros(len(roles), dtype=torch.float64)
    per_model_ev = torch.zeros(len(roles), dtype=torch.float64)
    n_tokens = 0
    was_training = crosscoder.training
    crosscoder.eval()
    try:
        for batch in tqdm(activation_batches, desc="reconstruction metrics", disable=not progress):
            batch = batch.to(device)
            losses = crosscoder.losses(batch)
            active = (losses.latents > 0).float()
            size = batch.shape[0]
            fired += active.sum(0)
            l0_sum += active.sum().item()
            ev_sum += losses.explained_variance.item() * size
            per_model_l0 += (active @ has_decoder).sum(0).double().cpu()
            per_model_ev += losses.explained_variance_per_model.double().cpu() * size
            n_tokens += size
    finally:
        crosscoder.train(was_training)
    if n_tokens == 0:
        raise ValueError("reconstruction_metrics got no activations")
    frequency = fired / n_tokens
    per_model = pd.DataFrame({"l0": (per_model_l0 / n_tokens).numpy(),
                              "explained_variance": (per_model_ev / n_tokens).numpy()},
                             index=pd.Index(roles, name="model"))
    per_model.attrs["model_names"] = list(crosscoder.cfg.model_names)
    return ReconstructionMetrics(
        n_tokens=n_tokens, l0=l0_sum / n_tokens, explained_variance=ev_sum / n_tokens,
        dead_fraction=(frequency == 0).float().mean().item(),
        dense_fraction=(frequency > dense_frequency).float().mean().item(), per_model=per_model)


def _reconstruct(crosscoder: CrossCoder, activations: torch.Tensor) -> torch.Tensor:
    """The crosscoder's reconstruction of ``[batch, seq, n_models, d_model]``, BOS (position 0) left as is."""
    body = activations[:, 1:]
    reconstruction = crosscoder(body.flatten(0, 1).to(crosscoder.W_enc.device)).view_as(body)
    return torch.cat([activations[:, :1], reconstruction.to(activations.device)], dim=1)


@torch.no_grad()
def ce_recovered(clean_loss, spliced_loss, ablated_loss):
    """The fraction of next-token loss recovered by splicing in the reconstruction, relative to zero-ablating
    the site: ``1 - (spliced - clean) / (ablated - clean)`` (1: as good as the model, 0: as bad as ablation).
    Works on numbers, arrays and pandas columns alike."""
    return 1 - (spliced_loss - clean_loss) / (ablated_loss - clean_loss)


def _passes(pair: ModelPair, token_batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Each ``[batch, seq]`` token batch in pieces of at most ``splice_rows_per_pass`` rows, so that a re-run's
    logits stay within ``SPLICE_LOGITS_BYTES`` (a 1,024-token batch of Gemma-2's 256,000-token vocabulary: one row)."""
    model = pair.models[0]
    for tokens in token_batches:
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or 0 in tokens.shape:
            yield tokens  # SplicedRunner names what is wrong with it
            continue
        bytes_per_value = next(model.parameters()).element_size()
        yield from tokens.split(splice_rows_per_pass(tokens.shape[1], int(model.cfg.d_vocab), bytes_per_value))


def splice_metrics(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                   progress: bool = True):
    """CE and KL when splicing the reconstruction into each model, averaged over all sequences' tokens.

    ``token_batches`` yields ``[batch, seq]`` tokens starting with BOS. Returns a pandas DataFrame, one
    row per model role (``base``, ``chat``; real names in ``attrs["model_names"]``): ``clean_loss``,
    ``spliced_loss``, ``ablated_loss``, ``ce_delta``, ``ce_recovered``,
    ``kl_spliced``, ``n_sequences``, ``n_tokens`` (predicted tokens per model).
    """
    import pandas as pd

    hook_point = check_compatible(crosscoder, pair)
    n_models = len(pair.models)
    totals = torch.zeros(n_models, 4, dtype=torch.float64)  # clean, spliced, ablated, kl summed over tokens
    ablated_by_length: dict[tuple[int, int], torch.Tensor] = {}  # (model, seq_len) -> logits [1, seq, vocab]
    n_sequences = n_tokens = 0
    was_training = crosscoder.training
    crosscoder.eval()
    try:
        for tokens in tqdm(_passes(pair, token_batches), desc="splicing", disable=not progress):
            runner = SplicedRunner(pair.models, hook_point, tokens)
            reconstruction = _reconstruct(crosscoder, runner.activations)
            for m in range(n_models):
                clean = runner.clean_logits(m)
                spliced = runner.run(m, reconstruction[:, :, m])
                key = (m, tokens.shape[1])
                if key not in ablated_by_length:
                    ablated_by_length[key] = runner.run(m, torch.zeros_like, rows=1)
                ablated = ablated_by_length[key].expand(tokens.shape[0], -1, -1)
                totals[m, 0] += chunked_next_token_loss(clean, runner.tokens).sum().item()
                totals[m, 1] += chunked_next_token_loss(spliced, runner.tokens).sum().item()
                totals[m, 2] += chunked_next_token_loss(ablated, runner.tokens).sum().item()
                totals[m, 3] += chunked_kl_divergence(clean[:, :-1], spliced[:, :-1]).sum().item()
                del spliced
            n_sequences += tokens.shape[0]
            n_tokens += tokens.shape[0] * (tokens.shape[1] - 1)
    finally:
        crosscoder.train(was_training)
    if n_tokens == 0:
        raise ValueError("splice_metrics got no tokens")
    means = (totals / n_tokens).numpy()
    table = pd.DataFrame(means, columns=["clean_loss", "spliced_loss", "ablated_loss", "kl_spliced"],
                         index=pd.Index(pair.roles, name="model"))
    table.attrs["model_names"] = list(pair.names)
    table["ce_delta"] = table["spliced_loss"] - table["clean_loss"]
    table["ce_recovered"] = ce_recovered(table["clean_loss"], table["spliced_loss"], table["ablated_loss"])
    table["n_sequences"], table["n_tokens"] = n_sequences, n_tokens
    ordered = table[["clean_loss", "spliced_loss", "ablated_loss", "ce_delta", "ce_recovered", "kl_spliced",
                     "n_sequences", "n_tokens"]]
    ordered.attrs = table.attrs
    return ordered


def replication_table(metrics: ReconstructionMetrics, splices, label: str = "this crosscoder",
                      include_published: bool = True):
    """The replication's results table (L0, CE recovered, CE delta, explained variance per model) from
    ``reconstruction_metrics`` and ``splice_metrics`` of a two-model crosscoder; with the published row
    underneath when ``include_published``."""
    import pandas as pd

    instance("metrics", metrics, ReconstructionMetrics)
    instance("splices", splices, pd.DataFrame)
    if list(splices.index) != ["base", "chat"] or list(metrics.per_model.index) != ["base", "chat"]:
        raise ValueError(f"replication_table compares a base and a chat model, got {list(splices.index)}")
    row = {"L0": metrics.l0,
           **{f"{role} CE recovered": splices.loc[role, "ce_recovered"] for role in ("base", "chat")},
           **{f"{role} CE delta": splices.loc[role, "ce_delta"] for role in ("base", "chat")},
           **{f"{role} FVE": metrics.per_model.loc[role, "explained_variance"] for role in ("base", "chat")}}
    rows = {label: row}
    if include_published:
        rows["replication (Gemma-2-2B, published)"] = REPLICATION_RESULTS
    return pd.DataFrame.from_dict(rows, orient="index")


@torch.no_grad()
def latent_ablation_effects(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                            latents: Sequence[int], progress: bool = True):
    """Per latent and model, the mean ``KL(clean || ablated)`` at the positions where the latent fired.

    Ablating subtracts the latent's decoder contribution from the hook activation of each model, on the
    same inputs. Returns a pandas DataFrame indexed by latent: ``kl_base``, ``kl_chat`` and ``n_active``
    (positions where the latent fired); NaN KL for a latent that never fired.
    """
    import pandas as pd

    hook_point = check_compatible(crosscoder, pair)
    names = pair.roles
    latent_ids = check_latent_ids(crosscoder, latents).tolist()
    kl_sums = torch.zeros(len(latent_ids), len(names), dtype=torch.float64)
    counts = torch.zeros(len(latent_ids), dtype=torch.float64)
    for tokens in tqdm(_passes(pair, token_batches), desc="ablating latents", disable=not progress):
        runner = SplicedRunner(pair.models, hook_point, tokens)
        codes = encode_positions(crosscoder, runner.activations)
        for row, latent in enumerate(latent_ids):
            active = codes[..., latent] > 0  # [batch, seq]
            if not active.any():
                continue
            # only the sequences where the latent fired change (its contribution is zero elsewhere)
            fired = active.any(dim=1).nonzero().squeeze(1)  # [n_fired]
            fired_on = fired.to(runner.activations.device)
            contribution = latent_contributions(crosscoder, codes[fired], [latent]).to(runner.activations.device)
            for m in range(len(names)):
                ablated = runner.run(m, runner.activations[fired_on, :, m] - contribution[:, :, m], rows=fired)
                divergence = chunked_kl_divergence(runner.clean_logits(m)[fired_on], ablated)
                kl_sums[row, m] += divergence[active[fired].to(ablated.device)].sum().item()
            counts[row] += active.sum().item()
    means = kl_sums / counts[:, None]
    table = pd.DataFrame(means.numpy(), columns=[f"kl_{role}" for role in names],
                         index=pd.Index(latent_ids, name="latent"))
    table.attrs["model_names"] = list(pair.names)
    table["n_active"] = counts.numpy().astype(int)
    return table


def causal_summary(effects, classes) -> dict[str, float]:
    """Summaries of ``latent_ablation_effects`` for two models, given taxonomy ``classes`` (a Series).

    ``shared_pearson``: the Pearson correlation of the two models' KL shifts over shared latents that
    fired (high = the latent does the same in both models); ``chat_only_median_ratio``: the median of
    ``KL(chat) / KL(base)`` over chat-only latents (well above 1 = the latent matters to the chat model
    only); ``chat_only_chat_larger``: the share of chat-only latents whose chat KL is the larger.
    """
    import pandas as pd

    base_col, chat_col = "kl_base", "kl_chat"
    instance("effects", effects, pd.DataFrame)
    instance("classes", classes, pd.Series)
    if not {base_col, chat_col} <= set(effects.columns):
        raise ValueError(f"effects must be latent_ablation_effects of two models ({base_col}, {chat_col}), got "
                         f"columns {list(effects.columns)}")
    fired = effects.dropna(subset=[base_col, chat_col])
    labels = classes.reindex(fired.index)
    shared = fired[labels == "shared"]
    chat_only = fired[labels == "chat-only"]
    summary = {"n_shared": len(shared), "n_chat_only": len(chat_only), "shared_pearson": float("nan"),
               "chat_only_median_ratio": float("nan"), "chat_only_chat_larger": float("nan")}
    if len(shared) >= 2:
        summary["shared_pearson"] = float(shared[base_col].corr(shared[chat_col]))
    if len(chat_only):
        summary["chat_only_median_ratio"] = float((chat_only[chat_col] / chat_only[base_col]).median())
        summary["chat_only_chat_larger"] = float((chat_only[chat_col] > chat_only[base_col]).mean())
    return summary
