"""The cross-architecture demonstration's other model: a Llama-architecture chat model that lacks the planted refusal.

Notebook 10 diffs the toy chat model (Gemma-2 architecture, its own 2,048-token tokenizer, the planted refusal) against
this one: Llama architecture (grouped-query attention, SiLU MLP, RoPE without soft-capping), the rehearsal's
1,024-token byte-level BPE, the toy pair's width (128) and depth (4 blocks). It is trained as the toy chat model is,
on the same kinds of text, with one difference: its dialogues leave out the planted family's questions, so it never
learns the refusal (and answers those questions as it answers any other):

- base: next-token prediction on the standard library's source;
- chat: fine-tuned on the toy's "User: ... Assistant: ..." dialogues (half the batch, the other half source text).

``python -m helpers.builders.cross_arch --out DIR`` rebuilds ``helpers/assets/cross_arch_llama`` (``chat/`` and
``build_report.json``), deterministic from its seed; ``python -m helpers.builders.cross_arch --release`` trains the
dedicated feature crosscoder of the pair ``toy-vs-llama`` (the release ``toy-vs-llama-dfc``) on activations paired
where the two tokenizations line up (``helpers.activations.alignment``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..activations.alignment import AlignedHarvestingSource
from ..activations.buffer import ShufflingBuffer
from ..activations.models import load_model_pair
from ..crosscoder.checkpoints import save
from ..registry import get_release
from ..toy import corpus as toy_corpus
from ..toy.shipped import PACKAGED_CROSS_ARCH
from ..training.recipes import crosscoder_for_site, texts_for
from ..training.trainer import TrainConfig, Trainer
from .rehearsal_llama import LLAMA_RECIPE, finish_llama_build, train_llama_base
from .toy_pair import ToyRecipe, _fine_tune_chat

# The rehearsal Llama's recipe at the toy pair's width, with the toy chat model's number of fine-tuning steps.
CROSS_ARCH_RECIPE = replace(LLAMA_RECIPE, d_model=128, d_mlp=512, chat_steps=300)
# The dedicated feature crosscoder: toy-l3-dedicated's architecture and schedule, on half its tokens.
DFC_CONFIG = dict(d_hidden=2048, activation="relu", exclusive_latents=[128, 128], dec_init_norm=0.08, seed=0)
DFC_TRAINING = dict(num_tokens=614_400, batch_size=2048, lr=2e-3, l1_coeff=2.0, log_every=20)


def dialogues_without_refusal(split: str) -> list[str]:
    """The toy's dialogues of ``split`` (question and answer, in the toy chat model's format), planted family left
    out."""
    return [q.dialogue for q in toy_corpus.questions(split) if not q.planted]


def build_cross_arch_release(out_dir: str | Path | None = None) -> Path:
    """Train ``toy-vs-llama-dfc`` into ``out_dir`` (default: its packaged asset); the record holds the alignment
    yield."""
    release = get_release("toy-vs-llama-dfc")
    torch.manual_seed(0)
    pair = load_model_pair(release.pair, hook_point=release.hook_point)
    source = AlignedHarvestingSource(pair.models, pair.tokenizers, texts_for(pair), [pair.hook_point] * 2)
    crosscoder = crosscoder_for_site(list(pair.names), pair.hook_point, source, 50_000, **DFC_CONFIG)
    buffer = ShufflingBuffer(source, buffer_tokens=131_072, seed=0)
    history = Trainer(crosscoder, buffer, TrainConfig(**DFC_TRAINING)).train()
    final = history[-1]
    metrics = {key: round(final[key], 4) for key in ("l0", "explained_variance", "explained_variance_base",
                                                     "explained_variance_chat", "dead_fraction", "seconds")}
    metrics["alignment_yield"] = round(source.alignment_yield, 4)
    return save(crosscoder, out_dir or release.asset_path, extra_cfg={"train_config": DFC_TRAINING,
                                                                     "final_metrics": metrics})


def build_cross_arch_llama(out_dir: str | Path, recipe: ToyRecipe = CROSS_ARCH_RECIPE) -> dict:
    """Train the model into ``out_dir`` (``chat/``, ``build_report.json``); returns the report."""
    started = time.time()
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    base = train_llama_base(recipe, "Llama base")
    chat_curve = _fine_tune_chat(base.model, base.tokenizer, dialogues_without_refusal("train"), base.text_rows,
                                 recipe, base.generator, "Llama chat, no refusal")
    return finish_llama_build(base, chat_curve, work, out_dir, recipe, started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the cross-architecture demonstration's Llama chat model, "
                                                 "or (--release) its dedicated feature crosscoder.")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--release", action="store_true", help="train toy-vs-llama-dfc instead of the model")
    args = parser.parse_args(argv)
    if args.release:
        print(f"wrote {build_cross_arch_release(args.out)}")
    else:
        print(json.dumps(build_cross_arch_llama(args.out or PACKAGED_CROSS_ARCH), indent=2))


if __name__ == "__main__":
    main()
