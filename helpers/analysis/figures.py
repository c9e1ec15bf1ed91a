"""The model-diffing figures (plotly): relative-norm histogram, decoder-cosine histogram, norm/cosine scatter."""

from __future__ import annotations

import numpy as np
import torch

CLASS_COLOURS = {"shared": "#4c72b0", "base-only": "#dd8452", "chat-only": "#c44e52", "dead": "#8c8c8c",
                 "unclassified": "#b3b3b3"}
NORM_AXIS = "relative norm  (0 = base-only, 0.5 = shared, 1 = chat-only)"


def relative_norm_histogram(values, title: str = "Relative decoder norm (chat / (base + chat))"):
    """The replication's figure: a 200-bin histogram of relative norms on ticks 0 to 1.

    ``values``: a tensor, array or Series of relative norms ``[d_hidden]``; NaNs (dead decoders) are dropped.
    """
    import plotly.graph_objects as go

    values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=float)
    values = values[np.isfinite(values)]
    figure = go.Figure(go.Histogram(x=values, xbins=dict(start=0, end=1, size=1 / 200), marker_color="#4c72b0"))
    figure.update_layout(
        title=title, xaxis_title=NORM_AXIS, yaxis_title="latents", bargap=0, template="plotly_white",
        xaxis=dict(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1.0]),
    )
    return figure


def shared_cosine_histogram(table, title: str = "Decoder cosine of shared latents (base vs chat)"):
    """Histogram of ``decoder_cosine`` over the shared latents of a ``latent_table``, log y (outliers show)."""
    import plotly.graph_objects as go

    shared = table.loc[table["class"] == "shared", "decoder_cosine"]
    figure = go.Figure(go.Histogram(x=shared, xbins=dict(start=-1, end=1, size=0.02), marker_color="#4c72b0"))
    figure.update_layout(title=f"{title}: {len(shared)} latents", xaxis_title="cosine similarity",
                         yaxis_title="latents (log)", yaxis_type="log", bargap=0, template="plotly_white",
                         xaxis=dict(range=[-1, 1]))
    return figure


def norm_cosine_scatter(table, title: str = "Relative norm against decoder cosine"):
    """Scatter of ``relative_norm`` against ``decoder_cosine`` per latent, coloured by class (hover: latent id)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, colour in CLASS_COLOURS.items():
        rows = table[table["class"] == name]
        if rows.empty:
            continue
        figure.add_trace(go.Scattergl(
            x=rows["relative_norm"], y=rows["decoder_cosine"], mode="markers", name=f"{name} ({len(rows)})",
            marker=dict(color=colour, size=4, opacity=0.7), text=[f"latent {i}" for i in rows.index],
            hovertemplate="%{text}<br>relative norm %{x:.3f}<br>cosine %{y:.3f}<extra></extra>",
        ))
    figure.update_layout(title=title, xaxis_title=NORM_AXIS, yaxis_title="decoder cosine", template="plotly_white",
                         xaxis=dict(range=[0, 1]), yaxis=dict(range=[-1.05, 1.05]))
    return figure


def latent_scaling_scatter(flagged, title: str = "Latent Scaling: chat-only latents"):
    """``nu_err`` against ``nu_rec`` for a ``scaling_flags`` table, chat-specific latents highlighted,
    the paper's thresholds drawn as dashed lines."""
    import plotly.graph_objects as go

    from .scaling import NU_ERR_MAX, NU_REC_MAX

    figure = go.Figure()
    for specific, colour, name in ((True, "#c44e52", "chat-specific"), (False, "#8c8c8c", "artefact suspected")):
        rows = flagged[flagged["chat_specific"] == specific]
        figure.add_trace(go.Scatter(
            x=rows["nu_err"], y=rows["nu_rec"], mode="markers", name=f"{name} ({len(rows)})",
            marker=dict(color=colour, size=7), text=[f"latent {i}" for i in rows.index],
            hovertemplate="%{text}<br>nu_err %{x:.3f}<br>nu_rec %{y:.3f}<extra></extra>",
        ))
    figure.add_vline(x=NU_ERR_MAX, line_dash="dash", line_color="#555")
    figure.add_hline(y=NU_REC_MAX, line_dash="dash", line_color="#555")
    figure.update_layout(title=title, xaxis_title="nu_err = beta_err(base) / beta_err(chat)",
                         yaxis_title="nu_rec = beta_rec(base) / beta_rec(chat)", template="plotly_white")
    return figure


def ablation_kl_scatter(effects, classes, title: str = "Ablating one latent: KL shift in each model"):
    """Each latent's ``KL(clean || ablated)`` in the base model against the chat model (log-log), by class."""
    import plotly.graph_objects as go

    base_col, chat_col = "kl_base", "kl_chat"
    names = effects.attrs.get("model_names", ["base", "chat"])
    labels = classes.reindex(effects.index)
    figure = go.Figure()
    for name, colour in CLASS_COLOURS.items():
        rows = effects[labels == name].dropna(subset=[base_col, chat_col])
        if rows.empty:
            continue
        figure.add_trace(go.Scatter(
            x=rows[base_col], y=rows[chat_col], mode="markers", name=f"{name} ({len(rows)})",
            marker=dict(color=colour, size=6, opacity=0.8), text=[f"latent {i}" for i in rows.index],
            hovertemplate="%{text}<br>KL base %{x:.2e}<br>KL chat %{y:.2e}<extra></extra>",
        ))
    figure.update_layout(title=title, xaxis_title=f"KL shift, base ({names[0]})",
                         yaxis_title=f"KL shift, chat ({names[1]})",
                         xaxis_type="log", yaxis_type="log", template="plotly_white")
    return figure


def training_curves(history, roles=("base", "chat"), title: str = "Training curves"):
    """Reconstruction loss (log scale), L0, explained variance per model and the dead fraction against the
    step, from ``Trainer.history`` (a list of records or a DataFrame of them)."""
    import pandas as pd
    from plotly.subplots import make_subplots

    history = pd.DataFrame(history)
    figure = make_subplots(rows=1, cols=4, subplot_titles=["reconstruction loss", "L0", "explained variance",
                                                           "dead latents (fraction)"])
    if len(history):
        figure.add_scatter(x=history.step, y=history.reconstruction, row=1, col=1, name="reconstruction")
        figure.add_scatter(x=history.step, y=history.l0, row=1, col=2, name="L0")
        for role in roles:
            figure.add_scatter(x=history.step, y=history[f"explained_variance_{role}"], row=1, col=3,
                               name=f"FVE {role}")
        figure.add_scatter(x=history.step, y=history.dead_fraction, row=1, col=4, name="dead")
    figure.update_yaxes(type="log", row=1, col=1)
    figure.update_layout(title=title, template="plotly_white", height=330)
    return figure


def scoreboard_heatmap(table, title: str = "Which method surfaces which planted difference"):
    """AUROC of each method's best item per organism, annotated with the rank at which a reader finds it
    (``table``: ``helpers.methods.scoreboard.scoreboard``'s DataFrame)."""
    import pandas as pd
    import plotly.express as px

    auroc = table.pivot(index="organism", columns="method", values="auroc")
    rank = table.pivot(index="organism", columns="method", values="rank").reindex_like(auroc)
    text = [[f"{a:.2f}<br>rank {'-' if pd.isna(r) else int(r)}" for a, r in zip(ar, rr)]
            for ar, rr in zip(auroc.values, rank.values)]
    figure = px.imshow(auroc, zmin=0.5, zmax=1.0, color_continuous_scale="Viridis", aspect="auto",
                       labels={"color": "AUROC"}, title=title, template="plotly_white")
    figure.update_traces(text=text, texttemplate="%{text}")
    return figure
