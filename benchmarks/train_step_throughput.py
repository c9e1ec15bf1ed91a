"""Training-step throughput: our CrossCoder step vs the replication's formulation, same config, one run.

    python benchmarks/train_step_throughput.py [--d-model 128 --d-hidden 2048 --batch 2048]

The reference step is written here from the replication's formulas (einsum encode / decode, squared
error, decoder-norm-weighted L1, explained variance), with Adam and gradient clipping as it trained.
Also prints the fraction of our step's time spent in matrix products (torch.profiler).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.tutorial.notebook import default_device

MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::baddbmm"}


class ReplicationCrossCoder(nn.Module):
    """The replication's crosscoder and loss, as a reference."""

    def __init__(self, d_model: int, d_hidden: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(d_hidden, 2, d_model, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * 0.08
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.permute(1, 2, 0).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.b_dec = nn.Parameter(torch.zeros(2, d_model))

    def get_losses(self, x: torch.Tensor):
        x_enc = torch.einsum("bnd,ndh->bh", x, self.W_enc)
        acts = torch.relu(x_enc + self.b_enc)
        x_dec = torch.einsum("bh,hnd->bnd", acts, self.W_dec) + self.b_dec
        squared_diff = (x_dec.float() - x.float()).pow(2)
        l2_loss = squared_diff.sum(dim=(-2, -1)).mean()
        total_variance = (x - x.mean(0)).pow(2).sum((-2, -1))
        explained_variance = 1 - squared_diff.sum((-2, -1)) / total_variance
        explained_variance_a = 1 - squared_diff[:, 0].sum(-1) / (x[:, 0] - x[:, 0].mean(0)).pow(2).sum(-1)
        explained_variance_b = 1 - squared_diff[:, 1].sum(-1) / (x[:, 1] - x[:, 1].mean(0)).pow(2).sum(-1)
        total_decoder_norm = self.W_dec.norm(dim=-1).sum(-1)
        l1_loss = (acts * total_decoder_norm[None, :]).sum(-1).mean(0)
        l0_loss = (acts > 0).float().sum(-1).mean()
        return l2_loss, l1_loss, l0_loss, explained_variance.mean(), explained_variance_a, explained_variance_b


def make_step(model, optimizer, compute_loss):
    def step(x):
        loss = compute_loss(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return step


def timed(step, batches, device) -> float:
    step(batches[0])
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches[1:]:
        step(x)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (len(batches) - 1)


def matmul_fraction(step, x) -> float:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    for _ in range(2):  # warm: the first steps allocate the optimiser state and caches
        step(x)
    with profile(activities=activities) as prof:
        for _ in range(10):
            step(x)
    events = prof.key_averages()
    attr = "self_device_time_total" if x.is_cuda else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in events)
    matmul = sum(getattr(e, attr) for e in events if e.key in MATMUL_OPS)
    return matmul / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-hidden", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds; the median is reported")
    args = parser.parse_args()
    device = default_device()
    batches = [torch.randn(args.batch, 2, args.d_model, device=device) for _ in range(args.steps + 1)]

    reference = ReplicationCrossCoder(args.d_model, args.d_hidden).to(device)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=5e-5, betas=(0.9, 0.999))
    def reference_loss(x: torch.Tensor) -> torch.Tensor:
        l2_loss, l1_loss, *_ = reference.get_losses(x)
        return l2_loss + 2.0 * l1_loss

    ref_step = make_step(reference, ref_opt, reference_loss)

    ours = CrossCoder(CrossCoderConfig(d_model=args.d_model, d_hidden=args.d_hidden)).to(device).train()
    our_opt = torch.optim.Adam(ours.parameters(), lr=5e-5, betas=(0.9, 0.999))
    our_step = make_step(ours, our_opt, lambda x: ours.losses(x, l1_coeff=2.0).total)

    rounds = [(timed(ref_step, batches, device), timed(our_step, batches, device)) for _ in range(args.rounds)]
    ref_s = statistics.median(r for r, _ in rounds)
    our_s = statistics.median(o for _, o in rounds)
    print(f"relu crosscoder, d_model {args.d_model}, d_hidden {args.d_hidden}, batch {args.batch}, device {device}")
    print(f"replication step: {ref_s * 1e3:8.2f} ms  ({args.batch / ref_s:12,.0f} activations/s)")
    print(f"our step:         {our_s * 1e3:8.2f} ms  ({args.batch / our_s:12,.0f} activations/s)")
    print(f"throughput ratio (ours / replication): {ref_s / our_s:.2f}x  (median of {args.rounds} interleaved rounds)")
    print(f"share of our step in matrix products: {matmul_fraction(our_step, batches[0]):.0%}")


if __name__ == "__main__":
    main()
