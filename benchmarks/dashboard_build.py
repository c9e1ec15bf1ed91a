"""Dashboard build time: ``gather_dashboards`` + ``render_html`` for 100 latents over 200k tokens.

    python benchmarks/dashboard_build.py [--pair toy] [--latents 100] [--tokens 200000]

Prints the total and what it is made of: the model forward passes and crosscoder encoding (timed
separately on the same tokens), the rest of the pass (collecting firing positions), assembling the
panels and writing the HTML. Target on a 2-core CPU for the toy pair: under 60 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from helpers.activations.diff import load_diff
from helpers.analysis.dashboards import gather_dashboards, random_shared, save_html, top_base_only, top_chat_only
from helpers.analysis.latents import encode_tokens
from helpers.analysis.norms import latent_table
from helpers.training.recipes import token_source_for
from helpers.tutorial.notebook import default_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="toy")
    parser.add_argument("--latents", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = default_device()
    diff = load_diff(args.pair, device=device)
    crosscoder, pair = diff.crosscoder, diff.pair
    table = latent_table(crosscoder)
    third = args.latents // 3
    latents = top_chat_only(table, third) + top_base_only(table, third)
    latents += random_shared(table, args.latents - len(latents))
    source = token_source_for(pair, args.seq_len, seed=11)
    n_batches = -(-args.tokens // (args.batch * args.seq_len))
    batches = [source.next_batch(args.batch) for _ in range(n_batches)]
    n_tokens = n_batches * args.batch * args.seq_len

    start = time.perf_counter()
    dashboards = gather_dashboards(pair, crosscoder, batches, latents, table=table, progress=False)
    gathered = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = save_html(dashboards, Path(folder) / "dashboards.html")
        size_mb = path.stat().st_size / 1e6
    done = time.perf_counter()

    encode_start = time.perf_counter()  # the forward passes and encoding alone, on the same tokens
    with torch.no_grad():
        for tokens in batches:
            encode_tokens(pair, crosscoder, tokens.to(device))
    encode_s = time.perf_counter() - encode_start

    total, gather_s, render_s = done - start, gathered - start, done - gathered
    print(f"pair {args.pair} | {len(latents)} latents | {n_tokens:,} tokens | device {device}")
    print(f"total {total:.1f} s (target < 60 s)")
    print(f"  gather pass      {gather_s:6.1f} s, of which models + crosscoder encode ~{encode_s:.1f} s "
          f"and collecting positions / building panels ~{gather_s - encode_s:.1f} s")
    print(f"  render HTML      {render_s:6.1f} s ({size_mb:.1f} MB file, of which plotly.js 4.8 MB)")


if __name__ == "__main__":
    main()
