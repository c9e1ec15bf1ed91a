"""Harvest throughput: our harvest (each model stops at the hook) vs the replication's method
(each model run to the end with ``run_with_cache``), on the same tokens, in one run.

    python benchmarks/harvest_throughput.py [--pair toy|gemma-2-2b] [--hook blocks.2.hook_resid_pre]

Prints activations per second for both and the ratio; checks both return the same activations.
"""

from __future__ import annotations

import argparse
import time

import torch

from helpers.activations.models import load_model_pair
from helpers.activations.sites import harvest
from helpers.training.recipes import token_source_for
from helpers.tutorial.notebook import default_device


def replication_harvest(models: list, tokens: torch.Tensor, hook_point: str) -> torch.Tensor:
    """The replication's buffer: every model runs the whole forward pass, caching one hook."""
    per_model = []
    for model in models:
        _, cache = model.run_with_cache(tokens, names_filter=hook_point)
        per_model.append(cache[hook_point])
    return torch.stack(per_model, dim=2)


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="toy")
    parser.add_argument("--hook", default=None, help="default: resid_pre of the middle layer")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = default_device()
    pair = load_model_pair(args.pair, device=device)
    hook = args.hook or f"blocks.{pair.n_layers // 2}.hook_resid_pre"
    tokens = token_source_for(pair, args.seq_len).next_batch(args.batch).to(device)
    with torch.no_grad():
        ours_s, ours = timed(lambda: harvest(pair.models, tokens, hook), args.repeats)
        ref_s, ref = timed(lambda: replication_harvest(pair.models, tokens, hook), args.repeats)
    n = tokens.numel()
    max_diff = (ours - ref.float()).abs().max().item()
    print(f"pair {args.pair} | hook {hook} | {args.batch} x {args.seq_len} tokens | device {device}")
    print(f"replication (run to the end): {n / ref_s:12,.0f} activations/s")
    print(f"ours (stop_at_layer):         {n / ours_s:12,.0f} activations/s")
    print(f"speed-up: {ref_s / ours_s:.2f}x   (max |difference| {max_diff:.2e})")


if __name__ == "__main__":
    main()
