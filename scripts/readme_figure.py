"""The README's figure: the toy release's histogram of relative decoder norms, as a self-contained SVG.

    python scripts/readme_figure.py [--release toy-l3] [--out docs/figures/relative_norms.svg]

Each bar carries its latent count (``data-count``) and bin edges, so ``tests/test_site.py`` checks the file
against a fresh histogram of the release. The y axis is logarithmic: the shared cluster holds most latents.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from helpers import from_pretrained, relative_norms

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "figures" / "relative_norms.svg"
BINS = 50
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 300, 60, 20, 30, 50
COLOURS = {"base-only": "#1f77b4", "shared": "#7f7f7f", "chat-only": "#d62728", "between": "#c7c7c7"}


def histogram(release: str) -> list[int]:
    """Latents per bin of the relative norm ``||d_chat|| / (||d_base|| + ||d_chat||)`` over ``[0, 1]``, ``[BINS]``."""
    norms = relative_norms(from_pretrained(release))
    norms = norms[torch.isfinite(norms)]
    return torch.histc(norms, bins=BINS, min=0.0, max=1.0).long().tolist()


def region(low: float, high: float) -> str:
    if high <= 0.1:
        return "base-only"
    if low >= 0.9:
        return "chat-only"
    if low >= 0.4 and high <= 0.6:
        return "shared"
    return "between"


def svg(counts: list[int], release: str) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = math.log10(max(counts) + 1)
    bar_w = plot_w / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="12" data-release="{release}">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="14">Relative decoder norm per latent '
             f'({release}, {sum(counts):,} latents)</text>']
    for tick in (0, 1, 10, 100, 1000, 10000):
        if math.log10(tick + 1) <= top:
            y = TOP + plot_h * (1 - math.log10(tick + 1) / top)
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                         f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    for index, count in enumerate(counts):
        low, high = index / len(counts), (index + 1) / len(counts)
        height = plot_h * math.log10(count + 1) / top
        parts.append(f'<rect class="bar" x="{LEFT + index * bar_w:.2f}" y="{TOP + plot_h - height:.2f}" '
                     f'width="{bar_w - 1:.2f}" height="{height:.2f}" fill="{COLOURS[region(low, high)]}" '
                     f'data-low="{low:.2f}" data-high="{high:.2f}" data-count="{count}"/>')
    for value in (0, 0.25, 0.5, 0.75, 1):
        x = LEFT + plot_w * value
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{value:g}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">'
                 '||d_chat|| / (||d_base|| + ||d_chat||): 0 = base-only, 0.5 = shared, 1 = chat-only</text>')
    parts.append(f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2})">latents (log scale)</text>')
    for name, x in (("base-only", 0.05), ("shared", 0.5), ("chat-only", 0.95)):
        parts.append(f'<text x="{LEFT + plot_w * x:.1f}" y="{TOP + 14}" text-anchor="middle" '
                     f'fill="{COLOURS[name]}">{name}</text>')
    return "\n".join([*parts, "</svg>"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="toy-l3")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg(histogram(args.release), args.release))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
