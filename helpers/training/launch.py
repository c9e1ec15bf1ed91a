"""Training from the command line, in one process or data-parallel over GPUs and nodes with ``torchrun``.

    # one process (CPU or one GPU)
    python -m helpers.training.launch train --pair toy --out runs/toy
    # harvest once to a disk cache (one process), then train any number of crosscoders from it
    python -m helpers.training.launch cache --pair gemma-2-2b --tokens 100000000 --out /shared/cache/gemma-l14
    # one node, 8 GPUs, from the cache (each rank reads its own 1/8 of it)
    torchrun --standalone --nproc-per-node 8 -m helpers.training.launch train --pair gemma-2-2b \\
        --cache /shared/cache/gemma-l14 --activation batchtopk --k 100 --d-hidden 73728 --out runs/g-bt
    # two nodes x 8 GPUs: the same command on each node, with its --node-rank (0 and 1)
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST0:29500 \\
        -m helpers.training.launch train --pair gemma-2-2b --cache /shared/cache/gemma-l14 --out /shared/runs/g-bt

Without ``--cache`` every rank loads the pair and harvests its own disjoint share of the token stream
(``helpers.activations.data.TokenShard``). A pair with separate tokenizers (``tokenizers: separate``) reads
``--texts`` documents of its data instead (``recipes.texts_for``; each rank every world-size-th), each model with its
own tokenizer, paired where the tokenizations line up (``helpers.activations.alignment``).
The defaults of every knob are the pair's ``settings`` in the registry.
``--resume`` continues the run in ``--out`` (at the world size it was started with).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..activations.alignment import AlignedHarvestingSource
from ..activations.buffer import (
    DiskCacheError,
    DiskCacheSource,
    HarvestingSource,
    ShufflingBuffer,
    check_cache_folder,
    model_label,
    write_disk_cache,
)
from ..activations.data import TokenShard
from ..activations.models import ModelPair, load_model_pair, resolve_model_name
from ..distributed import end_rank, init_from_env, is_main_process, rank_and_world
from ..registry import Pair, get_pair
from .recipes import crosscoder_for_site, texts_for, token_source_for
from .run_folder import check_free, latest_checkpoint
from .trainer import TrainConfig, Trainer

TRAIN_KNOBS = ("d_hidden", "num_tokens", "batch_size", "lr", "l1_coeff", "buffer_tokens", "seq_len", "model_batch")


def pair_source(pair: ModelPair, settings: dict, n_texts: int | None = None, rank: int = 0, world: int = 1):
    """The activation source of a loaded pair for this rank: its token stream's shard harvested, or for a pair
    with separate tokenizers its ``texts_for`` documents (every ``world``-th from ``rank``) read by each model with
    its own tokenizer and paired where the tokenizations line up."""
    if pair.separate_tokenizers:
        return AlignedHarvestingSource(pair.models, pair.tokenizers, texts_for(pair, n_texts)[rank::world],
                                       [pair.hook_point] * 2, texts_per_batch=settings["model_batch"])
    tokens = TokenShard(token_source_for(pair, settings["seq_len"]), rank, world)
    return HarvestingSource(pair.models, tokens, pair.hook_point, model_batch_size=settings["model_batch"])


def rank_buffer(pair_name: str, settings: dict, cache: str | None, device, n_texts: int | None = None
                ) -> ShufflingBuffer:
    """This rank's shuffling buffer over its shard of the disk cache ``cache``, or else of the pair's
    activations harvested on ``device`` (``pair_source``). Each rank shuffles with its own seed (its rank)."""
    rank, world = rank_and_world()
    if cache is not None:
        source = DiskCacheSource(cache, shard=(rank, world))
    else:
        source = pair_source(load_model_pair(pair_name, device=device), settings, n_texts, rank, world)
    return ShufflingBuffer(source, buffer_tokens=settings["buffer_tokens"], storage_dtype=settings["storage_dtype"],
                           seed=rank)


def check_cache_for_pair(cache: DiskCacheSource, profile: Pair) -> None:
    """Refuse a disk cache of other models or another hook point than the pair's, before any training (else the
    checkpoint would claim the pair's site for activations of another)."""
    cached = cache.fingerprint()
    wanted = {"models": [model_label(resolve_model_name(name)) for name in profile.model_names],
              "hook_point": profile.hook_point}
    differences = [f"{key}: cached {cached.get(key)!r}, pair {value!r}" for key, value in wanted.items()
                   if cached.get(key) != value]
    if differences:
        raise DiskCacheError(f"{cache.folder} does not cache pair {profile.name!r}: {'; '.join(differences)}. "
                             "Cache the pair with `python -m helpers.training.launch cache --pair ...`, or train "
                             "the pair the cache holds.")


def check_before_work(args: argparse.Namespace) -> None:
    """Everything the command line can check before loading a model or reading data: the numbers, the output
    folder (a new run refuses one that holds another run; ``--resume`` needs a checkpoint there), the cache."""
    for knob in (*TRAIN_KNOBS, "k", "k_start", "scale_tokens", "checkpoint_every", "tokens", "texts"):
        value = getattr(args, knob, None)
        if value is not None and not isinstance(value, str) and not value > 0:
            raise SystemExit(f"--{knob.replace('_', '-')} must be positive, got {value}")
    if args.command == "cache":
        check_cache_folder(args.out)
        return
    if args.resume:
        latest_checkpoint(args.out)
    else:
        check_free(args.out)
    if args.cache is not None:
        check_cache_for_pair(DiskCacheSource(args.cache), get_pair(args.pair))


def train(args: argparse.Namespace) -> Path | None:
    """Train (or ``--resume``) a crosscoder into ``args.out``; returns its final checkpoint."""
    device = init_from_env()
    profile = get_pair(args.pair)
    settings = profile.settings_with(**{k: v for k in TRAIN_KNOBS if (v := getattr(args, k)) is not None})
    check_before_work(args)
    buffer = rank_buffer(args.pair, settings, args.cache, device, args.texts)
    if args.resume:
        trainer = Trainer.resume(args.out, buffer, device)
    else:
        train_cfg = TrainConfig(num_tokens=settings["num_tokens"], batch_size=settings["batch_size"],
                                lr=settings["lr"],
                                l1_coeff=settings["l1_coeff"] if args.activation in ("relu", "jumprelu") else 0.0,
                                k_start=args.k_start, checkpoint_dir=str(args.out),
                                checkpoint_every=args.checkpoint_every, wandb_project=args.wandb_project)
        crosscoder = crosscoder_for_site(list(profile.model_names), profile.hook_point, buffer.source,
                                         args.scale_tokens, d_hidden=settings["d_hidden"], activation=args.activation,
                                         k=args.k)
        trainer = Trainer(crosscoder, buffer, train_cfg, device)
    trainer.train()
    if is_main_process():
        print(f"final checkpoint: {trainer.last_checkpoint}")
    return trainer.last_checkpoint


def cache(args: argparse.Namespace) -> Path:
    """Harvest ``args.tokens`` activations of the pair into the disk cache ``args.out`` (one process)."""
    device = init_from_env()
    if rank_and_world()[1] > 1:
        raise SystemExit("write the cache with one process (python -m helpers.training.launch cache ...), not torchrun")
    check_before_work(args)
    pair = load_model_pair(args.pair, device=device)
    folder = write_disk_cache(pair_source(pair, pair.profile.settings_with(), args.texts), args.out, args.tokens,
                              storage_dtype=args.storage_dtype)
    print(f"activation cache: {folder}")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train crosscoders (one process, or data-parallel with torchrun).")
    commands = parser.add_subparsers(dest="command", required=True)
    to_cache = commands.add_parser("cache", help="harvest a pair's activations once into a disk cache")
    to_cache.add_argument("--pair", required=True, help="a registered pair (helpers.list_pairs())")
    to_cache.add_argument("--tokens", type=int, required=True, help="activations to cache")
    to_cache.add_argument("--out", type=Path, required=True, help="cache folder (a shared disk for several nodes)")
    to_cache.add_argument("--storage-dtype", default="bfloat16")
    texts_help = "documents to read, for a pair with separate tokenizers (default: the toy's 3,348, or 100,000)"
    to_cache.add_argument("--texts", type=int, default=None, help=texts_help)
    to_train = commands.add_parser("train", help="train a crosscoder; under torchrun, data-parallel")
    to_train.add_argument("--pair", required=True, help="a registered pair (helpers.list_pairs())")
    to_train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints")
    to_train.add_argument("--cache", default=None, help="train from this disk cache instead of harvesting")
    to_train.add_argument("--activation", default="relu", choices=["relu", "topk", "batchtopk", "jumprelu"])
    to_train.add_argument("--k", type=int, default=None, help="active latents per token (topk / batchtopk)")
    to_train.add_argument("--k-start", type=int, default=None, help="anneal k down from this value")
    to_train.add_argument("--scale-tokens", type=int, default=50_000, help="activations for the scale factors")
    to_train.add_argument("--checkpoint-every", type=int, default=None)
    to_train.add_argument("--wandb-project", default=None, help="log to Weights & Biases (rank 0)")
    to_train.add_argument("--resume", action="store_true", help="continue the run in --out")
    to_train.add_argument("--texts", type=int, default=None, help=texts_help)
    for knob in TRAIN_KNOBS:
        kind = float if knob in ("lr", "l1_coeff") else int
        to_train.add_argument(f"--{knob.replace('_', '-')}", dest=knob, type=kind, default=None,
                              help="default: the pair's setting")
    args = parser.parse_args(argv)
    (train if args.command == "train" else cache)(args)
    end_rank()


if __name__ == "__main__":
    main()
