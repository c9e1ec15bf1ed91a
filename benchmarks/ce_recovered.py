"""CE / KL recovered: ``helpers.analysis.evals.splice_metrics`` (the part before the hook computed once per model)
against the original tutorial's method (eight full forward passes per batch: per model clean, cached,
zero-ablated and spliced), on the same batches, in one run.

    python benchmarks/ce_recovered.py [--pair toy|gemma-2-2b] [--hooks blocks.3.hook_resid_post ...]

Prints both methods' metrics, their largest difference and the speed ratio, per hook point.
"""

from __future__ import annotations

import argparse
import time

import torch

from helpers.activations.diff import load_diff
from helpers.analysis.evals import splice_metrics
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.training.recipes import token_source_for
from helpers.tutorial.notebook import default_device


@torch.no_grad()
def eight_pass_metrics(pair, crosscoder, token_batches) -> torch.Tensor:
    """The original tutorial's CE-recovered loop, with KL added: ``[n_models, 4]`` mean clean, spliced,
    ablated loss and KL(clean || spliced) per token. Every variant is a full forward pass."""
    hook = crosscoder.cfg.hook_point
    n_models = len(pair.models)
    sums = torch.zeros(n_models, 4, dtype=torch.float64)
    n_batches = 0
    for tokens in token_batches:
        cached = torch.stack([model.run_with_cache(tokens, names_filter=hook)[1][hook]
                              for model in pair.models], dim=2)  # passes 1-2: cache both models
        body = cached[:, 1:]
        reconstruction = crosscoder(body.flatten(0, 1)).view(body.shape)
        for m, model in enumerate(pair.models):
            def splice(act, hook, m=m, reconstruction=reconstruction):
                act[:, 1:] = reconstruction[:, :, m]
                return act

            def zero(act, hook):
                act[:] = 0
                return act

            clean_logits = model(tokens)  # pass 3 / 6
            spliced_logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)])  # pass 4 / 7
            ablated_loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, zero)])  # pass 5 / 8
            targets = tokens[:, 1:].flatten()
            clean_loss = torch.nn.functional.cross_entropy(clean_logits[:, :-1].flatten(0, 1), targets)
            spliced_loss = torch.nn.functional.cross_entropy(spliced_logits[:, :-1].flatten(0, 1), targets)
            kl = torch.nn.functional.kl_div(spliced_logits[:, :-1].log_softmax(-1),
                                            clean_logits[:, :-1].log_softmax(-1), log_target=True,
                                            reduction="none").sum(-1).mean()
            sums[m] += torch.tensor([clean_loss.item(), spliced_loss.item(), ablated_loss.item(), kl.item()],
                                    dtype=torch.float64)
        n_batches += 1
    return sums / n_batches


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="toy")
    parser.add_argument("--hooks", nargs="*", default=None,
                        help="default: the release's hook point and resid_pre of the middle layer")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    device = default_device()
    diff = load_diff(args.pair, device=device)
    release, pair = diff.crosscoder, diff.pair
    hooks = args.hooks or [release.cfg.hook_point, f"blocks.{pair.n_layers // 2}.hook_resid_pre"]
    source = token_source_for(pair, args.seq_len, seed=3)
    batches = [source.next_batch(args.batch).to(device) for _ in range(args.batches)]
    print(f"pair {args.pair} | {args.batches} batches of {args.batch} x {args.seq_len} tokens | device {device}")
    for hook in hooks:
        crosscoder = release if hook == release.cfg.hook_point else CrossCoder(CrossCoderConfig(
            d_model=pair.d_model, d_hidden=release.cfg.d_hidden, hook_point=hook)).to(device).eval()
        site = pair.at(hook)
        splice_metrics(site, crosscoder, batches[:1], progress=False)  # warm-up
        eight_pass_metrics(pair, crosscoder, batches[:1])
        ours_s, ours = timed(lambda cc=crosscoder, at=site: splice_metrics(at, cc, batches, progress=False))
        ref_s, ref = timed(lambda cc=crosscoder: eight_pass_metrics(pair, cc, batches))
        ours_values = torch.tensor(ours[["clean_loss", "spliced_loss", "ablated_loss", "kl_spliced"]].to_numpy())
        max_diff = (ours_values - ref).abs().max().item()
        label = "trained release" if crosscoder is release else "untrained crosscoder (timing only)"
        print(f"\nhook {hook} ({label})")
        print(ours.round(4).to_string())
        print(f"eight-pass method: {ref_s:.2f} s | splice_metrics: {ours_s:.2f} s | speed-up {ref_s / ours_s:.2f}x"
              f" | largest metric difference {max_diff:.2e}")


if __name__ == "__main__":
    main()
