"""Decoder-norm analysis of a crosscoder: relative norms and their histogram.

Convention: ``relative_norm = ||d_B|| / (||d_A|| + ||d_B||)`` with A = model 0 (base) and B = model 1
(chat): 0 = base-only, 0.5 = shared, 1 = chat-only. Norms are taken in the crosscoder's working
(normalised) space, whether or not its scaling is folded.
"""

from __future__ import annotations

import torch

from .crosscoder import CrossCoder


@torch.no_grad()
def relative_norms(crosscoder: CrossCoder, model_a: int = 0, model_b: int = 1) -> torch.Tensor:
    """``||d_B|| / (||d_A|| + ||d_B||)`` per latent, ``[d_hidden]``; NaN where both norms are 0."""
    norms = crosscoder.decoder_norms().float()
    a, b = norms[:, model_a], norms[:, model_b]
    return b / (a + b)


def relative_norm_histogram(values: torch.Tensor, title: str = "Relative decoder norm (chat / (base + chat))"):
    """The replication's figure: a 200-bin histogram of relative norms on ticks 0 to 1 (plotly)."""
    import plotly.graph_objects as go

    values = values[torch.isfinite(values)].cpu().numpy()
    figure = go.Figure(go.Histogram(x=values, xbins=dict(start=0, end=1, size=1 / 200), marker_color="#4c72b0"))
    figure.update_layout(
        title=title, xaxis_title="relative norm  (0 = base-only, 0.5 = shared, 1 = chat-only)",
        yaxis_title="latents", bargap=0, template="plotly_white",
        xaxis=dict(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1.0]),
    )
    return figure
