"""Checks for the notebooks' exercises, the ARENA way: you write the function, a ``check_...`` tests it.

Each check runs your function on random inputs (several shapes, edge cases) and, when given, on the
notebook's real ones, and compares it with the package's own implementation, the one the rest of the
tutorials use. A wrong answer raises ``AssertionError`` saying on which input and by how much, and, when
your output matches a common mistake, which one. A right answer prints what was checked.

=====================================  =========  ==============================================
check                                  notebook   the package's implementation it compares with
=====================================  =========  ==============================================
``check_relative_norms``               01         ``helpers.analysis.norms.relative_norms``
``check_sparsity_penalty``             02         ``CrossCoder.losses(...).sparsity``
``check_auroc``                        03         ``helpers.analysis.detection.auroc``
``check_ce_recovered``                 04         ``helpers.analysis.evals.ce_recovered``
``check_latent_scaling_beta``          06         ``helpers.analysis.scaling.closed_form_beta``
=====================================  =========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..analysis.detection import auroc
from ..analysis.evals import ce_recovered
from ..analysis.norms import relative_norms
from ..analysis.scaling import closed_form_beta
from ..crosscoder.config import CrossCoderConfig
from ..crosscoder.model import CrossCoder


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu()
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as error:
        raise AssertionError(f"{what} returned {type(value).__name__}, which is not a number or a tensor") from error


def _compare(name: str, case: str, got, expected: torch.Tensor, mistakes: dict[str, torch.Tensor],
             atol: float = 1e-4) -> None:
    """Raise an ``AssertionError`` explaining how ``got`` differs from ``expected`` (and which known
    mistake it matches, if any)."""
    got = _as_tensor(got, name)
    expected = expected.detach().float().cpu()
    if got.shape != expected.shape:
        raise AssertionError(f"{name} on {case}: returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    close = torch.isclose(got, expected, atol=atol, rtol=1e-4, equal_nan=True)
    if bool(close.all()):
        return
    for hint, wrong in mistakes.items():
        if torch.allclose(got, wrong.detach().float().cpu(), atol=atol, rtol=1e-4, equal_nan=True):
            raise AssertionError(f"{name} on {case}: {hint}")
    where = (~close).flatten().nonzero()[0].item()
    raise AssertionError(f"{name} on {case}: {int((~close).sum())} of {close.numel()} values differ; at flat index "
                         f"{where} expected {expected.flatten()[where].item():.6g}, "
                         f"got {got.flatten()[where].item():.6g}")


def _passed(name: str, cases: list[str]) -> None:
    print(f"✔ {name} passed on {len(cases)} inputs: {', '.join(cases)}")


def _crosscoder_with_decoder(w_dec: torch.Tensor) -> CrossCoder:
    """A crosscoder whose decoder is ``w_dec [d_hidden, n_models, d_model]`` (the rest as initialised)."""
    d_hidden, n_models, d_model = w_dec.shape
    crosscoder = CrossCoder(CrossCoderConfig(d_model=d_model, d_hidden=d_hidden, n_models=n_models))
    with torch.no_grad():
        crosscoder.W_dec.copy_(w_dec)
    return crosscoder


def _random_decoders() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    decoders = {f"random W_dec {shape}": torch.randn(*shape, generator=generator)
                for shape in [(16, 2, 8), (64, 2, 32)]}
    one_sided = torch.randn(8, 2, 4, generator=generator)
    one_sided[:4, 0] = 0  # latents that decode into the chat model only
    decoders["W_dec with chat-only latents (8, 2, 4)"] = one_sided
    return decoders


def check_relative_norms(fn: Callable[[torch.Tensor], torch.Tensor], crosscoder: CrossCoder | None = None) -> None:
    """``fn(W_dec)`` for ``W_dec [d_hidden, 2, d_model]`` must return ``||d_chat|| / (||d_base|| + ||d_chat||)``
    per latent, ``[d_hidden]``. With ``crosscoder``, also on its decoder in the working space."""
    cases = {case: (w_dec, relative_norms(_crosscoder_with_decoder(w_dec)))
             for case, w_dec in _random_decoders().items()}
    if crosscoder is not None:
        cases["the notebook's crosscoder"] = (crosscoder.decoder_vectors(normalized=True).detach().float().cpu(),
                                              relative_norms(crosscoder))
    for case, (w_dec, expected) in cases.items():
        norms = w_dec.norm(dim=-1)
        _compare("relative_norms", case, fn(w_dec.clone()), expected, {
            "this is base / (base + chat); the relative norm puts the chat model on top": norms[:, 0] / norms.sum(-1),
            "this divides by the norm of the summed vectors; divide by the sum of the two norms":
                norms[:, 1] / w_dec.sum(1).norm(dim=-1),
            "this is the ratio chat / base; the relative norm is chat / (base + chat), in [0, 1]":
                norms[:, 1] / norms[:, 0],
        })
    _passed("check_relative_norms", list(cases))


def check_sparsity_penalty(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           crosscoder: CrossCoder | None = None, activations: torch.Tensor | None = None) -> None:
    """``fn(latents [batch, d_hidden], W_dec [d_hidden, n_models, d_model])`` must return the crosscoder's
    sparsity term: ``sum_j f_j * sum_m ||d_j^m||``, averaged over the batch (a scalar). With ``crosscoder`` and
    raw ``activations [batch, n_models, d_model]``, also on the notebook's own."""
    generator = torch.Generator().manual_seed(1)
    cases = {}
    for case, w_dec in _random_decoders().items():
        d_hidden, n_models, d_model = w_dec.shape
        cases[case] = (_crosscoder_with_decoder(w_dec), torch.randn(32, n_models, d_model, generator=generator), True)
    if crosscoder is not None and activations is not None:
        cases["the notebook's crosscoder and activations"] = (crosscoder, activations, False)
    for case, (model, x, normalized) in cases.items():
        was_training = model.training
        model.eval()
        with torch.no_grad():
            losses = model.losses(x.to(model.W_dec.device), normalized=normalized)
        model.train(was_training)
        latents, w_dec = losses.latents.cpu(), model.decoder_vectors(normalized=True).detach().cpu()
        norms = w_dec.norm(dim=-1)
        _compare("sparsity_penalty", case, fn(latents.clone(), w_dec.clone()), losses.sparsity.cpu(), {
            "this is summed over the batch; average it over tokens": (latents @ norms.sum(-1)).sum(),
            "this weights by the norm of the concatenated decoders (the SAE's L2); the crosscoder sums the "
            "models' norms": (latents @ norms.pow(2).sum(-1).sqrt()).mean(),
            "this is the plain L1 of the latents; weight each latent by its decoder norms": latents.sum(-1).mean(),
        })
    _passed("check_sparsity_penalty", list(cases))


def check_auroc(fn: Callable[[torch.Tensor, torch.Tensor], float], scores: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> None:
    """``fn(scores [n], labels [n] bool)`` must return the AUROC: the probability that a random positive
    scores above a random negative, ties counting half. With ``scores`` and ``labels``, also on those."""
    generator = torch.Generator().manual_seed(2)
    labels_random = torch.rand(200, generator=generator) < 0.3
    cases = {
        "random scores": (torch.randn(200, generator=generator), labels_random),
        "an informative score": (torch.randn(200, generator=generator) + 1.5 * labels_random, labels_random),
        "a sparse latent (mostly 0: many ties)": (torch.relu(torch.randn(200, generator=generator)
                                                             + labels_random - 1).round(), labels_random),
    }
    if scores is not None and labels is not None:
        cases["the notebook's latent"] = (torch.as_tensor(scores).float().cpu(), torch.as_tensor(labels).bool().cpu())
    for case, (s, y) in cases.items():
        positives, negatives = s[y], s[~y]
        above = (positives[:, None] > negatives[None, :]).float().mean()
        _compare("auroc", case, fn(s.clone(), y.clone()), auroc(s, y)[0], {
            "the positives and negatives are swapped (you computed 1 - AUROC)": 1 - auroc(s, y)[0],
            "ties are ignored; count a tie between a positive and a negative as half": above,
        })
    _passed("check_auroc", list(cases))


def check_ce_recovered(fn: Callable[[float, float, float], float], splices=None) -> None:
    """``fn(clean_loss, spliced_loss, ablated_loss)`` must return the fraction of the next-token loss
    recovered by splicing in the reconstruction, relative to zero-ablating the site. ``splices``: a
    ``splice_metrics`` table, whose rows are checked too."""
    cases = {"a good crosscoder": (2.0, 2.1, 7.6), "a useless one": (2.0, 7.6, 7.6), "a perfect one": (3.1, 3.1, 9.0),
             "worse than ablation": (2.0, 9.0, 7.6)}
    if splices is not None:
        for role, row in splices.iterrows():
            cases[f"the notebook's {role} model"] = (float(row["clean_loss"]), float(row["spliced_loss"]),
                                                     float(row["ablated_loss"]))
    for case, (clean, spliced, ablated) in cases.items():
        expected = torch.tensor(ce_recovered(clean, spliced, ablated))
        _compare("ce_recovered", case, fn(clean, spliced, ablated), expected, {
            "this is the fraction lost; CE recovered is 1 minus it": 1 - expected,
            "this divides by the ablated loss alone; divide by (ablated - clean)":
                torch.tensor(1 - (spliced - clean) / ablated),
        })
    _passed("check_ce_recovered", list(cases))


def check_latent_scaling_beta(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                              real: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
    """``fn(f [n], d [d_model], y [n, d_model])`` must return the ``beta`` minimising
    ``sum_i ||beta * f_i * d - y_i||^2`` (a scalar). ``real``: the notebook's own ``(f, d, y)``."""
    generator = torch.Generator().manual_seed(3)
    d = torch.randn(16, generator=generator)
    f = torch.relu(torch.randn(300, generator=generator))
    cases = {
        "y = 0.5 f d + noise": (f, d, 0.5 * f[:, None] * d + 0.1 * torch.randn(300, 16, generator=generator)),
        "y unrelated to d": (f, d, torch.randn(300, 16, generator=generator)),
        "a unit d, 40 tokens": (f[:40], d / d.norm(), torch.randn(40, 16, generator=generator)),
    }
    if real is not None:
        cases["the notebook's latent"] = tuple(t.detach().float().cpu() for t in real)
    for case, (ff, dd, yy) in cases.items():
        expected = closed_form_beta(ff, dd, yy)
        projection = (ff[:, None] * yy).sum(0) @ dd
        _compare("latent_scaling_beta", case, fn(ff.clone(), dd.clone(), yy.clone()), expected, {
            "the denominator misses ||d||^2 (or the sum of f^2)": projection / (ff.pow(2).sum()),
            "the denominator misses the sum of f^2": projection / dd.pow(2).sum(),
            "the numerator should weight each y_i by f_i": (yy.sum(0) @ dd) / (dd.pow(2).sum() * ff.pow(2).sum()),
        }, atol=1e-4)
    _passed("check_latent_scaling_beta", list(cases))
