"""BatchTopK's inference threshold, ours against dictionary_learning's, step by step on the same batches.

    git clone https://github.com/science-of-finetuning/dictionary_learning /tmp/dictionary_learning
    pip install zstandard   # imported by its utils module
    python benchmarks/batchtopk_threshold.py --peer /tmp/dictionary_learning [--steps 600 --k 20 --k-max 200]

dictionary_learning's ``BatchTopKCrossCoderTrainer`` (its code run unmodified) trains on the toy pair's
activations, k annealed from ``--k-max`` to ``--k`` over the first 10% of the steps as the toy releases do, with
``threshold_start_step=0``. Before each of its steps, two of our crosscoders receive its weights and the same batch
and update their thresholds by our rule (``CrossCoder._update_threshold``, ``TrainConfig.learns_threshold_at``): one
with the same start step, one starting once k has annealed. Prints the three thresholds along the way, the largest
gap between the peer's and ours with the same start, and the inference L0 each final threshold gives on held-out
activations with the final weights, against k.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from topk_step_throughput import import_peer

from helpers.activations.buffer import scale_factors_of
from helpers.activations.models import load_model_pair
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.training.config import TrainConfig
from helpers.training.recipes import activation_batches


def copy_weights(peer_ae, ours: CrossCoder) -> None:
    with torch.no_grad():
        ours.W_enc.copy_(peer_ae.encoder.weight)
        ours.b_enc.copy_(peer_ae.encoder.bias)
        ours.W_dec.copy_(peer_ae.decoder.weight.transpose(0, 1))
        ours.b_dec.copy_(peer_ae.decoder.bias)


def inference_l0(crosscoder: CrossCoder, threshold: float, x: torch.Tensor) -> float:
    crosscoder.eval()
    crosscoder.threshold.fill_(threshold)
    with torch.no_grad():
        l0 = (crosscoder.encode(x, normalized=True) > 0).float().sum(-1).mean().item()
    crosscoder.train()
    return l0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, help="a checkout of science-of-finetuning/dictionary_learning")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--d-hidden", type=int, default=2048)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--k-max", type=int, default=200)
    args = parser.parse_args()
    _, peer_trainer_class = import_peer(Path(args.peer))
    pair = load_model_pair("toy")
    n_tokens = (args.steps + 4) * args.batch
    batches = list(activation_batches(pair, n_tokens, args.batch, seq_len=128))
    scale = scale_factors_of(torch.cat(batches[:4]))
    batches = [b * scale[None, :, None] for b in batches]  # the working space: mean norm sqrt(d_model)
    held_out, batches = torch.cat(batches[:4]), batches[4:]
    schedule = TrainConfig(num_tokens=args.steps * args.batch, batch_size=args.batch, k_start=args.k_max)
    anneal_steps = max(1, int(schedule.k_anneal_frac * schedule.total_steps))
    after_annealing = TrainConfig(num_tokens=args.steps * args.batch, batch_size=args.batch, k_start=args.k_max,
                                  threshold_start_step=anneal_steps - 1)

    peer = peer_trainer_class(steps=args.steps, activation_dim=pair.d_model, dict_size=args.d_hidden, k=args.k,
                              layer=0, lm_name="toy", num_layers=2, k_max=args.k_max,
                              k_annealing_steps=anneal_steps, threshold_start_step=0, warmup_steps=anneal_steps,
                              device="cpu", seed=0)
    # the peer sets its decoder bias to the batch's geometric median inside its first update; set it beforehand (it
    # recomputes the same) so that our crosscoders start from the weights its first loss sees
    peer.ae.decoder.bias.data = peer.geometric_median(batches[0].clone())
    cfg = CrossCoderConfig(d_model=pair.d_model, d_hidden=args.d_hidden, activation="batchtopk", k=args.k)
    same_start, after_anneal = CrossCoder(cfg).train(), CrossCoder(cfg).train()
    gaps = []
    print(f"toy pair activations, d_hidden {args.d_hidden}, k {args.k_max} -> {args.k} over {anneal_steps} of "
          f"{args.steps} steps, batch {args.batch}")
    print(f"{'step':>5} {'k':>4} {'dictionary_learning':>20} {'ours, same start':>18} {'ours, after annealing':>22}")
    for step, x in enumerate(batches[: args.steps]):
        k = schedule.k_at(step, args.k)
        for ours, rule in ((same_start, schedule), (after_anneal, after_annealing)):
            copy_weights(peer.ae, ours)
            ours.learns_threshold = rule.learns_threshold_at(step)
            ours.losses(x, normalized=True, k=k)
        peer.update(step, x.clone())
        assert int(peer.ae.k) == k, f"k schedules differ at step {step}: {int(peer.ae.k)} vs {k}"
        peer_threshold = float(peer.ae.threshold)
        if step > 0:
            gaps.append(abs(float(same_start.threshold) - peer_threshold) / peer_threshold)
        if step % max(1, args.steps // 12) == 0 or step == args.steps - 1:
            print(f"{step:5d} {k:4d} {peer_threshold:20.6f} {float(same_start.threshold):18.6f} "
                  f"{float(after_anneal.threshold):22.6f}")
    print(f"largest relative gap, dictionary_learning vs ours with the same start: {max(gaps):.2e}")
    final = CrossCoder(cfg)
    copy_weights(peer.ae, final)
    for name, threshold in (("dictionary_learning", float(peer.ae.threshold)),
                            ("ours, same start", float(same_start.threshold)),
                            ("ours, after annealing", float(after_anneal.threshold))):
        print(f"inference L0 with the final threshold, {name}: {inference_l0(final, threshold, held_out):.1f} "
              f"(k = {args.k})")


if __name__ == "__main__":
    main()
