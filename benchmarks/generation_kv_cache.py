"""Greedy generation with a KV cache vs the full re-run at every new token, same prompts, one run.

    python benchmarks/generation_kv_cache.py [--pair toy] [--prompt-tokens 300] [--new-tokens 32] [--prompts 8]

Prompts are ordinary text (the toy corpus's source) of about ``--prompt-tokens`` tokens ending in a question
after ``User:``. Timed for the chat model alone and with a latent ablated (the edit that runs both models);
prints seconds for both ways, the speed-up, and whether the continuations are identical.
"""

from __future__ import annotations

import argparse
import time

from helpers import from_pretrained
from helpers.activations.models import load_model_pair
from helpers.activations.runs import EditedRun
from helpers.analysis.behaviour import greedy_continuations
from helpers.analysis.interventions import ablated_logits_fn
from helpers.toy.corpus import read_source, source_files
from helpers.tutorial.notebook import default_device


def long_prompts(tokenizer, n_prompts: int, n_tokens: int) -> list[str]:
    """``n_prompts`` prompts of ordinary text, about ``n_tokens`` tokens each, ending in a question to the chat
    model."""
    text = "\n".join(read_source(path) for path in source_files("heldout")[:20])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stride = max(1, (len(ids) - n_tokens) // n_prompts)
    return [tokenizer.decode(ids[i * stride : i * stride + n_tokens]) + "\nUser: What does os.path.join do?\nAssistant:"
            for i in range(n_prompts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="toy")
    parser.add_argument("--release", default="toy-l3", help="the crosscoder whose latent the ablated run removes")
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=8)
    args = parser.parse_args()
    device = default_device()
    pair = load_model_pair(args.pair, device=device)
    prompts = long_prompts(pair.tokenizer, args.prompts, args.prompt_tokens)
    runs = {"chat model": EditedRun(pair.models, 1),
            "chat, latent 0 ablated": ablated_logits_fn(pair, from_pretrained(args.release, device=device), [0])}
    print(f"{args.pair}: {len(prompts)} prompts of ~{args.prompt_tokens} tokens, {args.new_tokens} new tokens, "
          f"{device}")
    for name, run in runs.items():
        seconds = {}
        outputs = {}
        for use_cache in (False, True):
            started = time.perf_counter()
            outputs[use_cache] = greedy_continuations(run, pair.tokenizer, prompts, args.new_tokens, device=device,
                                                      use_cache=use_cache)
            seconds[use_cache] = time.perf_counter() - started
        print(f"{name:24s} full re-run {seconds[False]:7.2f} s   KV cache {seconds[True]:7.2f} s   "
              f"speed-up {seconds[False] / seconds[True]:5.1f}x   same tokens: {outputs[False] == outputs[True]}")


if __name__ == "__main__":
    main()
