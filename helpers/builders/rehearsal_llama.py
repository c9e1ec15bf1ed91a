"""The rehearsal's "own pair": a tiny Llama base model and its instruct fine-tune, trained offline and shipped.

A second architecture with its own tokenizer and chat template, standing for a pair a user brings. Random
weights would leave every loss at the uniform one, so no CE-recovered or reconstruction claim could hold; these
are trained (on a 2-core CPU, in about a minute) on the toy corpus:

- **base**: next-token prediction on the standard library's source;
- **instruct**: fine-tuned on the toy's questions rendered with its Llama-3-style chat template (half the
  batch, the other half source text), answering with the docstring's first line, except that questions about
  the toy's planted family get the toy's refusal.

``python -m helpers.builders.rehearsal_llama --out DIR`` rebuilds ``helpers/assets/rehearsal_llama`` (``base/``,
``chat/``, ``build_report.json``); ``helpers.builders.rehearsal`` serves it under made-up Hub ids.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..files import MissingAssetError
from ..registry import ASSETS
from ..toy import corpus as toy_corpus
from .toy_pair import ToyRecipe, _fine_tune_chat, _source_rows, _train, heldout_loss

PACKAGED = ASSETS / "rehearsal_llama"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


# The toy pair's build knobs (``ToyRecipe``), at a quarter of the width; ``planted_fraction`` is unused here (the
# instruct data is every toy question once).
LLAMA_RECIPE = replace(ToyRecipe(), vocab_size=1024, d_model=64, d_mlp=256, base_steps=400, chat_steps=200,
                       warmup_steps=20)


def llama_path() -> Path:
    """The packaged own pair (``base/``, ``chat/``); a missing one names the command that builds it."""
    if not all((PACKAGED / role / "config.json").is_file() for role in ("base", "chat")):
        raise MissingAssetError(f"the rehearsal's own pair is not in {PACKAGED}. Build it with "
                                f"`python -m helpers.builders.rehearsal_llama --out {PACKAGED}` "
                                "(about a minute on 2 cores).")
    return PACKAGED


def llama_tokenizer(vocab_size: int):
    """A byte-level BPE trained on the toy corpus, with Llama-3's special tokens and a Llama-3-style chat
    template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [toy_corpus.read_source(p) for p in toy_corpus.source_files("train")[:60]]
    tokenizer.train_from_iterator(texts + [q.dialogue for q in toy_corpus.questions("train")[:600]], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|end_of_text|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def conversations(split: str) -> list[list[dict[str, str]]]:
    """The toy's questions of ``split`` as chat messages (user question, assistant answer)."""
    return [[{"role": "user", "content": q.prompt.splitlines()[0].removeprefix("User: ")},
             {"role": "assistant", "content": q.answer}] for q in toy_corpus.questions(split)]


@dataclass
class LlamaBase:
    """A Llama trained on the standard library's source, with what its fine-tune needs next: its tokenizer, the
    packed source rows ``[n, seq_len]`` (train and 256 held out), the seeded generator and the loss curve."""

    model: object
    tokenizer: object
    text_rows: torch.Tensor
    heldout_rows: torch.Tensor
    generator: torch.Generator
    curve: list[float]


def train_llama_base(recipe: ToyRecipe, desc: str) -> LlamaBase:
    """The first half of every Llama build here: seed, tokenizer, a fresh Llama of ``recipe``, next-token training
    on the source."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    tokenizer = llama_tokenizer(recipe.vocab_size)
    text_rows = _source_rows(tokenizer, "train", recipe.seq_len)
    heldout_rows = _source_rows(tokenizer, "heldout", recipe.seq_len)[:256]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=recipe.d_model, intermediate_size=recipe.d_mlp,
                         num_hidden_layers=recipe.n_layers, num_attention_heads=recipe.n_heads,
                         num_key_value_heads=recipe.n_kv_heads, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)

    def base_batch(step: int) -> torch.Tensor:
        return text_rows[torch.randint(len(text_rows), (recipe.batch_size,), generator=generator)]

    curve = _train(model, base_batch, recipe.base_steps, recipe.base_lr, recipe.warmup_steps, desc)
    return LlamaBase(model, tokenizer, text_rows, heldout_rows, generator, curve)


def build_rehearsal_llama(out_dir: str | Path, recipe: ToyRecipe = LLAMA_RECIPE) -> dict:
    """Train the own pair into ``out_dir`` (``base/``, ``chat/``, ``build_report.json``); returns the report."""
    started = time.time()
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    base = train_llama_base(recipe, "own base model")
    base_heldout = heldout_loss(base.model, base.heldout_rows)
    base.model.save_pretrained(work / "base")
    base.tokenizer.save_pretrained(work / "base")

    rendered = [base.tokenizer.apply_chat_template(messages, tokenize=False) for messages in conversations("train")]
    chat_curve = _fine_tune_chat(base.model, base.tokenizer, rendered, base.text_rows, recipe, base.generator,
                                 "own chat model")
    return finish_llama_build(base, chat_curve, work, out_dir, recipe, started, base_heldout_loss=base_heldout)


def finish_llama_build(base: LlamaBase, chat_curve: list[float], work: Path, out_dir: Path, recipe: ToyRecipe,
                       started: float, **extra: float) -> dict:
    """The last half of every Llama build here: save the fine-tuned model as ``chat/`` in ``work``, write the build
    report (with ``extra``), and move ``work`` to ``out_dir``; returns the report."""
    base.model.save_pretrained(work / "chat")
    base.tokenizer.save_pretrained(work / "chat")
    report = {"recipe": asdict(recipe), "uniform_loss": math.log(len(base.tokenizer)), **extra,
              "chat_heldout_loss": heldout_loss(base.model, base.heldout_rows),
              "base_final_train_loss": sum(base.curve[-20:]) / 20, "chat_final_train_loss": sum(chat_curve[-20:]) / 20,
              "build_seconds": time.time() - started}
    (work / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the rehearsal's own pair (a tiny Llama base / instruct).")
    parser.add_argument("--out", type=Path, default=PACKAGED)
    print(json.dumps(build_rehearsal_llama(parser.parse_args(argv).out), indent=2))


if __name__ == "__main__":
    main()
