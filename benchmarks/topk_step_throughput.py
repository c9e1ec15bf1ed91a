"""BatchTopK training-step throughput: our sparse step, our dense step, and dictionary_learning's
``BatchTopKCrossCoderTrainer.update`` (science-of-finetuning/dictionary_learning, its code run unmodified
from a checkout), on the same weights and batch, in one run.

    git clone https://github.com/science-of-finetuning/dictionary_learning /tmp/dictionary_learning
    pip install zstandard   # imported by its utils module
    python benchmarks/topk_step_throughput.py --peer /tmp/dictionary_learning [--d-hidden 16384 --k 32]

Before timing, both sides get identical weights and the same batch, and their reconstruction errors are
compared (ours sums the squared error over both models, theirs averages over models: ours = 2 x theirs).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.tutorial.notebook import default_device


def import_peer(checkout: Path):
    """dictionary_learning's crosscoder modules, imported from ``checkout`` without running the package's
    ``__init__`` (which imports nnsight for its activation buffer); none of its files is changed."""
    for name, folder in (("dictionary_learning", checkout / "dictionary_learning"),
                         ("dictionary_learning.trainers", checkout / "dictionary_learning" / "trainers")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    dictionary = importlib.import_module("dictionary_learning.dictionary")
    trainer = importlib.import_module("dictionary_learning.trainers.crosscoder")
    return dictionary.BatchTopKCrossCoder, trainer.BatchTopKCrossCoderTrainer


def our_step(crosscoder: CrossCoder, optimizer: torch.optim.Optimizer, x: torch.Tensor, sparse: bool) -> float:
    """One training step as ``Trainer`` takes it: losses, backward, clip at 1, Adam."""
    losses = crosscoder.losses(x, normalized=True, sparse=sparse)
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    torch.nn.utils.clip_grad_norm_(crosscoder.parameters(), 1.0)
    optimizer.step()
    return losses.reconstruction.item()


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True,
                        help="a checkout of science-of-finetuning/dictionary_learning")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-hidden", type=int, default=16384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = default_device()
    torch.manual_seed(0)
    peer_class, peer_trainer_class = import_peer(args.peer)

    cfg = CrossCoderConfig(d_model=args.d_model, d_hidden=args.d_hidden, activation="batchtopk", k=args.k, seed=0)
    sparse_cc = CrossCoder(cfg).to(device).train()
    dense_cc = CrossCoder(cfg).to(device).train()
    peer = peer_trainer_class(steps=10_000, activation_dim=args.d_model, dict_size=args.d_hidden, k=args.k, layer=0,
                              lm_name="benchmark", num_layers=2, lr=1e-4, warmup_steps=0, threshold_start_step=0,
                              device=str(device), seed=0)
    with torch.no_grad():  # the same weights on both sides
        peer.ae.encoder.weight.copy_(sparse_cc.W_enc)
        peer.ae.encoder.bias.copy_(sparse_cc.b_enc)
        peer.ae.decoder.weight.copy_(sparse_cc.W_dec.transpose(0, 1))
        peer.ae.decoder.bias.copy_(sparse_cc.b_dec)
    x = torch.randn(args.batch, 2, args.d_model, device=device) * 0.5 + torch.randn(2, args.d_model, device=device)

    ours_recon = sparse_cc.losses(x, normalized=True).reconstruction.item()
    dense_recon = dense_cc.losses(x, normalized=True, sparse=False).reconstruction.item()
    peer_log = peer.loss(x.clone(), step=1, logging=True, normalize_activations=False)
    peer_recon = peer_log.losses["mse_loss"] * 2
    print(f"d_model {args.d_model} x 2 models | d_hidden {args.d_hidden} | k {args.k} (d_hidden / k = "
          f"{args.d_hidden // args.k}) | batch {args.batch} | device {device} | threads {torch.get_num_threads()}")
    print(f"reconstruction on the same weights and batch: ours sparse {ours_recon:.6f}, "
          f"ours dense {dense_recon:.6f}, dictionary_learning {peer_recon:.6f} (x2)")

    sparse_opt = torch.optim.Adam(sparse_cc.parameters(), lr=1e-4)
    dense_opt = torch.optim.Adam(dense_cc.parameters(), lr=1e-4)
    runs = {
        "ours, sparse": lambda: our_step(sparse_cc, sparse_opt, x, sparse=True),
        "ours, dense": lambda: our_step(dense_cc, dense_opt, x, sparse=False),
        "dictionary_learning": lambda: peer.update(2, x.clone()),
    }
    for run in runs.values():  # warm-up
        run()
    times = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved, so drift affects every method alike
        for name, run in runs.items():
            times[name].append(timed(run))
    medians = {name: statistics.median(values) for name, values in times.items()}
    flat = x.flatten(1)
    w_enc = sparse_cc.W_enc.detach().flatten(0, 1)
    matmul = statistics.median(timed(lambda: torch.addmm(sparse_cc.b_enc.detach(), flat, w_enc))
                               for _ in range(args.rounds))
    for name, seconds in medians.items():
        print(f"{name:22s} {seconds * 1000:8.1f} ms / step  {args.batch / seconds:10,.0f} activations/s")
    print(f"ours sparse vs dictionary_learning: {medians['dictionary_learning'] / medians['ours, sparse']:.2f}x | "
          f"vs our dense step: {medians['ours, dense'] / medians['ours, sparse']:.2f}x | the encoder's dense matrix "
          f"product is {matmul / medians['ours, sparse']:.0%} of our sparse step")


if __name__ == "__main__":
    main()
