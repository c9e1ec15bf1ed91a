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
