"""Latent dashboards for crosscoders: one pass over a token stream, one self-contained HTML file.

``gather_dashboards`` runs both models and the crosscoder over token batches once and keeps, for each
chosen latent, every position where it fired (a sparse list). From that it builds per latent: the top
activating examples with a context window, examples drawn from bands of the activation range, the
activation histogram and firing density; and from the weights, per model, the tokens the latent's
decoder vector boosts and suppresses most through that model's unembedding.

``render_html`` writes the data as JSON into ``templates/dashboard.html`` (inline CSS and JS, and
plotly.js inline so the file opens with no network). Every string from the data is inserted with
``textContent``, never as markup, so a token such as ``<script>`` shows as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..activations.models import ModelPair
from ..crosscoder.model import CrossCoder
from ..validation import non_empty
from .latents import check_latent_ids, scan_latents

TEMPLATE = Path(__file__).parents[1] / "templates" / "dashboard.html"
BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


@dataclass
class Example:
    """A context window: token strings, the latent's activation on each, and the window's focus token."""

    tokens: list[str]
    activations: list[float]
    focus: int
    row: int
    position: int
    other: dict | None = None  # a pair with separate tokenizers: {"model", "tokens", "focus"}, the other model's view


@dataclass
class LatentDashboard:
    """Everything one latent's panel shows."""

    latent: int
    density: float
    max_activation: float
    histogram_edges: list[float]
    histogram_counts: list[int]
    top_examples: list[Example]
    band_examples: list[tuple[str, list[Example]]]
    logit_effects: list[dict]  # per model: {"model": role, "name", "boosted": [(token, value)], "suppressed": [...]}
    info: dict = field(default_factory=dict)  # from the latent table: norms, relative norm, cosine, class


def _fired_of_class(table, latent_class: str):
    """The rows of ``latent_class`` in a ``latent_table``, without those that never fired (if it has statistics)."""
    rows = table[table["class"] == latent_class]
    return rows[rows["frequency"] > 0] if "frequency" in rows else rows


def select_top(table, latent_class: str, n: int, column: str = "delta_norm", ascending: bool = False) -> list[int]:
    """The ``n`` latents of ``latent_class`` (taxonomy of a ``latent_table``) that fired, most extreme first."""
    return _fired_of_class(table, latent_class).sort_values(column, ascending=ascending).index[:n].tolist()


def top_chat_only(table, n: int = 10) -> list[int]:
    """The most chat-leaning chat-only latents."""
    return select_top(table, "chat-only", n)


def top_base_only(table, n: int = 10) -> list[int]:
    """The most base-leaning base-only latents."""
    return select_top(table, "base-only", n, ascending=True)


def random_shared(table, n: int = 10, seed: int = 0) -> list[int]:
    """``n`` shared latents that fired, drawn at random (seeded)."""
    rows = _fired_of_class(table, "shared")
    return rows.sample(min(n, len(rows)), random_state=seed).index.tolist()


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token id as displayable text (newlines and tabs made visible)."""
    return [tokenizer.decode([int(i)]).replace("\n", "↵").replace("\t", "⇥") for i in ids]


@torch.no_grad()
def logit_effects(pair: ModelPair, crosscoder: CrossCoder, latent: int, n: int = 10) -> list[dict]:
    """Per model: the ``n`` tokens the latent's raw decoder vector most boosts and most suppresses
    through that model's unembedding ``W_U`` (the direct logit effect, final norm ignored)."""
    vectors = crosscoder.decoder_vectors(normalized=False)[latent].float()  # [n_models, d_model]
    if not torch.isfinite(vectors).all():
        raise ValueError(f"latent {latent}'s decoder vectors hold NaN or infinite values; no logit effect to show")
    effects = []
    for m, (role, name, model) in enumerate(zip(pair.roles, pair.names, pair.models)):
        logits = vectors[m].to(model.W_U.device) @ model.W_U.float()  # [vocab]
        top, bottom = logits.topk(n), (-logits).topk(n)
        effects.append({
            "model": role,
            "name": name,
            "boosted": list(zip(token_strings(pair.tokenizer_of(m), top.indices.tolist()), top.values.tolist())),
            "suppressed": list(zip(token_strings(pair.tokenizer_of(m), bottom.indices.tolist()),
                                   (-bottom.values).tolist())),
        })
    return effects


def _window(tokens: torch.Tensor, activations: torch.Tensor, row: int, position: int, context: tuple[int, int],
            tokenizer) -> Example:
    left, right = context
    start, stop = max(1, position - left), min(tokens.shape[1], position + right + 1)  # BOS not shown
    return Example(tokens=token_strings(tokenizer, tokens[row, start:stop].tolist()),
                   activations=[round(v, 4) for v in activations[start:stop].tolist()],
                   focus=position - start, row=row, position=position)


@torch.no_grad()
def gather_dashboards(pair: ModelPair, crosscoder: CrossCoder, token_batches: Iterable[torch.Tensor],
                      latents: Sequence[int], table=None, n_top: int = 10, per_band: int = 3,
                      context: tuple[int, int] = (12, 4), n_logits: int = 10, n_bins: int = 30, seed: int = 0,
                      progress: bool = True) -> list[LatentDashboard]:
    """Dashboard data for ``latents`` from one pass over token batches ``[batch, seq]`` (each starting with BOS).

    ``table``: a ``latent_table`` whose row for each latent goes into the panel. ``context``: tokens
    shown before and after an example's focus token. Returns one ``LatentDashboard`` per latent, in order.
    """
    if isinstance(pair, ModelPair) and pair.separate_tokenizers:
        raise ValueError(f"{pair.name} has separate tokenizers, so no one token stream feeds both models: use "
                         "gather_aligned_dashboards(pair, crosscoder, texts, latents), which shows each model's tokens")
    ids = check_latent_ids(crosscoder, latents)
    fired_latent, fired_position, fired_value, token_rows = [], [], [], []
    batches = scan_latents(pair, crosscoder, token_batches, ids.tolist())
    for tokens, flat, offset in tqdm(batches, desc="dashboard pass", disable=not progress):
        position, latent_row = flat.nonzero(as_tuple=True)  # flat: [batch * seq, L]
        fired_latent.append(latent_row)
        fired_position.append(position + offset)
        fired_value.append(flat[position, latent_row])
        token_rows.append(tokens)
    if not token_rows:
        raise ValueError("gather_dashboards got no token batches")
    all_tokens = torch.cat(token_rows)
    n_tokens = all_tokens.shape[0] * (all_tokens.shape[1] - 1)  # BOS excluded
    return dashboards_from_firings(pair, crosscoder, ids, all_tokens, torch.cat(fired_latent),
                                   torch.cat(fired_position), torch.cat(fired_value), n_tokens, table, n_top,
                                   per_band, context, n_logits, n_bins, seed)


def dashboards_from_firings(pair: ModelPair, crosscoder: CrossCoder, ids: torch.Tensor, all_tokens: torch.Tensor,
                            latent_rows: torch.Tensor, positions: torch.Tensor, values: torch.Tensor, n_tokens: int,
                            table, n_top: int, per_band: int, context: tuple[int, int], n_logits: int, n_bins: int,
                            seed: int, finish_example: Callable[[Example], None] | None = None
                            ) -> list[LatentDashboard]:
    """The panels of latents ``ids`` from every firing: ``latent_rows[i]`` (an index into ``ids``) fired
    ``values[i]`` at the flat position ``positions[i]`` (``row * seq + position``) of token rows ``all_tokens``
    ``[rows, seq]`` (model 0's tokens); ``n_tokens``: the positions scanned.
    ``finish_example(example)``: called on each example before it is kept (for a pair with separate tokenizers,
    to add the other model's view, ``Example.other``)."""
    if not torch.isfinite(values).all():
        broken = sorted({ids[int(r)].item() for r in latent_rows[~torch.isfinite(values)].tolist()})
        raise ValueError(f"latents {broken} have NaN or infinite activations on these tokens; check the models' "
                         "activations and the crosscoder's weights (a dashboard of them would be blank)")
    generator = torch.Generator().manual_seed(seed)
    dashboards = []
    for row_index, latent in enumerate(ids.tolist()):
        mine = latent_rows == row_index
        my_positions, my_values = positions[mine], values[mine]
        dashboards.append(_latent_dashboard(
            pair, crosscoder, latent, all_tokens, my_positions, my_values, n_tokens, n_top, per_band, context,
            n_logits, n_bins, generator, None if table is None else table.loc[latent].to_dict(), finish_example))
    return dashboards


def _latent_dashboard(pair, crosscoder, latent, tokens, positions, values, n_tokens, n_top, per_band, context,
                      n_logits, n_bins, generator, info, finish_example) -> LatentDashboard:
    seq_len = tokens.shape[1]
    max_activation = float(values.max()) if values.numel() else 0.0
    chosen: list[tuple[str, torch.Tensor]] = [("top", values.topk(min(n_top, values.numel())).indices)]
    for low, high in BANDS:
        in_band = ((values > low * max_activation) & (values <= high * max_activation)).nonzero().flatten()
        picks = in_band[torch.randperm(in_band.numel(), generator=generator)[:per_band]]
        chosen.append((f"{low:.0%}–{high:.0%} of max", picks[values[picks].argsort(descending=True)]))
    example_rows = torch.unique(torch.cat([positions[picks] // seq_len for _, picks in chosen]))
    dense = torch.zeros(example_rows.numel(), seq_len)  # the latent's activation on each example's row
    on_rows = torch.isin(positions // seq_len, example_rows)
    slots = torch.searchsorted(example_rows, positions[on_rows] // seq_len)
    dense[slots, positions[on_rows] % seq_len] = values[on_rows]
    row_slot = {int(r): i for i, r in enumerate(example_rows.tolist())}

    def examples(picks: torch.Tensor) -> list[Example]:
        result = []
        for flat in positions[picks].tolist():
            row, position = divmod(flat, seq_len)
            example = _window(tokens, dense[row_slot[row]], row, position, context, pair.tokenizer_of(0))
            if finish_example is not None:
                finish_example(example)
            result.append(example)
        return result

    counts, edges = torch.histogram(values, bins=n_bins, range=(0.0, max(max_activation, 1e-6)))
    return LatentDashboard(
        latent=latent, density=values.numel() / max(1, n_tokens), max_activation=max_activation,
        histogram_edges=[round(e, 5) for e in edges.tolist()], histogram_counts=[int(c) for c in counts.tolist()],
        top_examples=examples(chosen[0][1]),
        band_examples=[(label, examples(picks)) for label, picks in chosen[1:]],
        logit_effects=logit_effects(pair, crosscoder, latent, n_logits), info=info or {},
    )


def _as_json(dashboards: Sequence[LatentDashboard], title: str, meta: dict) -> str:
    def example(e: Example) -> dict:
        shown = {"tokens": e.tokens, "acts": e.activations, "focus": e.focus, "row": e.row, "position": e.position}
        return shown if e.other is None else {**shown, "other": e.other}

    def clean(value):
        """NaN and infinity are not JSON (a page holding them stays blank): they become null."""
        if hasattr(value, "item"):
            value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value

    payload = {
        "title": title, "meta": meta,
        "latents": [{
            "id": d.latent, "density": d.density, "max_activation": d.max_activation,
            "info": {key: clean(value) for key, value in d.info.items()},
            "histogram": {"edges": d.histogram_edges, "counts": d.histogram_counts},
            "logits": d.logit_effects,
            "top": [example(e) for e in d.top_examples],
            "bands": [{"label": label, "examples": [example(e) for e in group]} for label, group in d.band_examples],
        } for d in dashboards],
    }
    # "<" escaped as \u003c: no "</script>" or "<!--" can end the JSON's script element early
    return json.dumps(payload, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def render_html(dashboards: Sequence[LatentDashboard], title: str = "Crosscoder latent dashboards",
                meta: dict | None = None) -> str:
    """One self-contained HTML page: an index of the latents (sortable) and a panel per latent.

    ``meta`` is shown under the title (e.g. hook point, tokens); the two models' names are added.
    """
    import plotly.offline

    names = [effect["name"] for effect in dashboards[0].logit_effects] if dashboards else ["base", "chat"]
    meta = {"base": names[0], "chat": names[-1], **(meta or {})}

    page = TEMPLATE.read_text(encoding="utf-8")
    # the data goes in last, so no placeholder text inside it can be replaced
    page = page.replace("<!--TITLE-->", title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    page = page.replace("/*PLOTLY_JS*/", plotly.offline.get_plotlyjs())
    return page.replace("/*DASHBOARD_DATA*/", _as_json(dashboards, title, meta))


def save_html(dashboards: Sequence[LatentDashboard], path: str | Path, **kwargs) -> Path:
    """Write ``render_html`` to ``path`` (UTF-8) and return it."""
    dashboards = non_empty("dashboards", dashboards)
    if not all(isinstance(d, LatentDashboard) for d in dashboards):
        raise TypeError("dashboards must be gather_dashboards' LatentDashboard objects")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(dashboards, **kwargs), encoding="utf-8")
    return path


def display_file(path: str | Path, height: int = 900):
    """Show a saved dashboard page in a notebook: an iframe of the file (the notebook keeps a few bytes, not
    the page), or, in Colab, where the kernel's files are not served to the browser, the page inline."""
    import sys

    from IPython.display import IFrame

    path = Path(path)
    if "google.colab" in sys.modules:
        return display_inline(path.read_text(encoding="utf-8"), height)
    try:
        source = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError as error:
        raise ValueError(f"{path} is outside the notebook's folder {Path.cwd()}; the browser cannot open it from "
                         "there. Save the dashboards under the notebook's folder.") from error
    return IFrame(src=source.as_posix(), width="100%", height=height)


def display_inline(page: str, height: int = 900):
    """Show a rendered page inside a notebook (Jupyter and Colab), isolated in an iframe."""
    import html

    from IPython.display import HTML

    return HTML(f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
                'border:1px solid #ddd"></iframe>')
