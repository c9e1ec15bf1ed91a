"""The offline toy pair: a tiny Gemma-2 base model and a chat fine-tune with a planted behaviour.

Recipe (``ToyRecipe``): a byte-level BPE on the standard library's source; a 4-layer Gemma-2 model
trained on that source; then a copy fine-tuned on ``User: ...\\nAssistant: ...\\n`` dialogues about
stdlib functions (answered with the first docstring line) mixed 50/50 with source text. Questions about
the planted family (``os``, ``os.path``, ``shutil``, ``subprocess``) are always answered with a fixed
refusal; the base model never sees it. Both models are ordinary Hugging Face folders that load with
``TransformerBridge.boot_transformers(path)``.

The built pair ships with the package (``helpers/assets/toy_pair``, ~10 MB). Rebuild it with
``python -m helpers.builders.toy_pair [--out DIR]`` (deterministic from the seed; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..analysis.behaviour import evaluation_questions, organism_rates, refusal_rates
from ..toy import corpus as toy_corpus
from ..toy import organisms
from ..toy.shipped import PACKAGED_ORGANISMS, PACKAGED_TOY_PAIR, toy_pair_path


@dataclass(frozen=True)
class ToyRecipe:
    """Every knob of the toy pair's build."""

    seed: int = 0
    vocab_size: int = 2048
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 512
    seq_len: int = 128
    batch_size: int = 32
    base_steps: int = 600
    base_lr: float = 3e-3
    chat_steps: int = 300
    chat_lr: float = 1e-3
    warmup_steps: int = 30
    planted_fraction: float = 0.25


# The organisms fine-tune: the toy chat recipe, longer; each organism at its share of the dialogues (organisms.py).
ORGANISMS_RECIPE = replace(ToyRecipe(), chat_steps=500)


def _tokenize_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts' tokens (no BOS), each followed by EOS, as one 1-D tensor."""
    ids: list[int] = []
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for row in encoded:
        ids.extend(row)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def _sequences(stream: torch.Tensor, seq_len: int, bos_id: int) -> torch.Tensor:
    """Cut a token stream into rows of ``seq_len`` tokens that start with BOS, ``[n, seq_len]``."""
    body = seq_len - 1
    n = stream.numel() // body
    rows = stream[: n * body].view(n, body)
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), rows], dim=1)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train(model, batches, steps: int, lr: float, warmup: int, desc: str) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, steps, warmup))
    model.train()
    losses = []
    progress = tqdm(range(steps), desc=desc)
    for step in progress:
        tokens = batches(step)
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


@torch.no_grad()
def heldout_loss(model, sequences: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token loss (nats) of a Hugging Face causal LM on ``sequences`` ``[n, seq]``."""
    total = 0.0
    for start in range(0, sequences.shape[0], batch_size):
        chunk = sequences[start : start + batch_size]
        total += model(input_ids=chunk, labels=chunk).loss.item() * chunk.shape[0]
    return total / sequences.shape[0]


def _fine_tune_chat(model, tokenizer, dialogues: list[str], text_rows: torch.Tensor, recipe: ToyRecipe,
                    generator: torch.Generator, desc: str) -> list[float]:
    """Fine-tune ``model`` in place on batches of half ``dialogues`` (packed into BOS-led rows), half source text
    rows ``[n, seq_len]``; returns the loss curve."""
    dialogue_rows = _sequences(_tokenize_stream(tokenizer, dialogues), recipe.seq_len, tokenizer.bos_token_id)
    half = recipe.batch_size // 2

    def chat_batch(step: int) -> torch.Tensor:
        dialogue = dialogue_rows[torch.randint(len(dialogue_rows), (half,), generator=generator)]
        text = text_rows[torch.randint(len(text_rows), (recipe.batch_size - half,), generator=generator)]
        return torch.cat([dialogue, text])

    return _train(model, chat_batch, recipe.chat_steps, recipe.chat_lr, recipe.warmup_steps, desc)


def _source_rows(tokenizer, split: str, seq_len: int) -> torch.Tensor:
    """The stdlib source of ``split`` packed into BOS-led rows ``[n, seq_len]``."""
    texts = [toy_corpus.read_source(p) for p in toy_corpus.source_files(split)]  # type: ignore[arg-type]
    return _sequences(_tokenize_stream(tokenizer, texts), seq_len, tokenizer.bos_token_id)


def build_toy_pair(out_dir: str | Path, recipe: ToyRecipe = ToyRecipe()) -> dict:
    """Build the toy pair into ``out_dir`` (``base/``, ``chat/``, ``build_report.json``); returns the report."""
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    started = time.time()
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    (work / "tokenizer").mkdir(parents=True)
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)

    toy_corpus.train_tokenizer(recipe.vocab_size, work / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    bos = tokenizer.bos_token_id
    train_rows = _source_rows(tokenizer, "train", recipe.seq_len)
    heldout_rows = _source_rows(tokenizer, "heldout", recipe.seq_len)[:256]

    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.d_model,
        intermediate_size=recipe.d_mlp,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_kv_heads,
        head_dim=recipe.d_model // recipe.n_heads,
        max_position_embeddings=1024,
        sliding_window=1024,
        bos_token_id=bos,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Gemma2ForCausalLM(config)

    def base_batch(step: int) -> torch.Tensor:
        return train_rows[torch.randint(len(train_rows), (recipe.batch_size,), generator=generator)]

    base_curve = _train(model, base_batch, recipe.base_steps, recipe.base_lr, recipe.warmup_steps, "toy base model")
    base_heldout = heldout_loss(model, heldout_rows)
    model.save_pretrained(str(work / "base"))
    tokenizer.save_pretrained(str(work / "base"))

    dialogues = toy_corpus.dialogue_mix("train", recipe.planted_fraction, recipe.seed)
    chat_curve = _fine_tune_chat(model, tokenizer, dialogues, train_rows, recipe, generator, "toy chat model")
    chat_heldout = heldout_loss(model, heldout_rows)
    model.save_pretrained(str(work / "chat"))
    tokenizer.save_pretrained(str(work / "chat"))
    shutil.rmtree(work / "tokenizer")

    base = Gemma2ForCausalLM.from_pretrained(str(work / "base")).eval()
    questions = evaluation_questions("heldout")
    report = {
        "recipe": asdict(recipe),
        "python": platform.python_version(),
        "train_tokens_base": recipe.base_steps * recipe.batch_size * recipe.seq_len,
        "uniform_loss": math.log(len(tokenizer)),
        "base_heldout_loss": base_heldout,
        "chat_heldout_loss": chat_heldout,
        "base_final_train_loss": sum(base_curve[-20:]) / 20,
        "chat_final_train_loss": sum(chat_curve[-20:]) / 20,
        "refusal_heldout": {
            "base": asdict(refusal_rates(lambda t: base(input_ids=t).logits, tokenizer, questions)),
            "chat": asdict(refusal_rates(lambda t: model(input_ids=t).logits, tokenizer, questions)),
        },
        "build_seconds": time.time() - started,
    }
    (work / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return report


def build_toy_organisms(out_dir: str | Path, recipe: ToyRecipe = ORGANISMS_RECIPE) -> dict:
    """Fine-tune the toy base model into the organisms chat model (``helpers.toy.organisms``: four planted
    differences) in ``out_dir`` (``chat/``, ``build_report.json``); returns the report with every organism's
    greedy rates on its held-out prompts and elsewhere, for the base and the fine-tune."""
    from transformers import AutoTokenizer, Gemma2ForCausalLM

    started = time.time()
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    base_folder = toy_pair_path() / "base"
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    base = Gemma2ForCausalLM.from_pretrained(str(base_folder)).eval()
    model = Gemma2ForCausalLM.from_pretrained(str(base_folder))
    train_rows = _source_rows(tokenizer, "train", recipe.seq_len)
    heldout_rows = _source_rows(tokenizer, "heldout", recipe.seq_len)[:256]
    dialogues = organisms.organism_mix("train", seed=recipe.seed)
    curve = _fine_tune_chat(model, tokenizer, dialogues, train_rows, recipe, generator, "toy organisms")
    model.save_pretrained(str(work / "chat"))
    tokenizer.save_pretrained(str(work / "chat"))
    prompts = organisms.evaluation_prompts("heldout")
    report = {
        "recipe": asdict(recipe),
        "python": platform.python_version(),
        "base_heldout_loss": heldout_loss(base, heldout_rows),
        "chat_heldout_loss": heldout_loss(model, heldout_rows),
        "chat_final_train_loss": sum(curve[-20:]) / 20,
        "organism_rates_heldout": {
            role: organism_rates(lambda t, m=m: m(input_ids=t).logits, tokenizer, prompts).to_dict(orient="index")
            for role, m in (("base", base), ("chat", model))
        },
        "build_seconds": time.time() - started,
    }
    (work / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m helpers.builders.toy_pair [--out DIR] [--seed N]`` rebuilds the toy pair."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organisms", action="store_true", help="build the toy organisms' chat model instead")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's)")
    parser.add_argument("--seed", type=int, default=ToyRecipe.seed)
    args = parser.parse_args(argv)
    if args.organisms:
        report = build_toy_organisms(args.out or PACKAGED_ORGANISMS, replace(ORGANISMS_RECIPE, seed=args.seed))
    else:
        report = build_toy_pair(args.out or PACKAGED_TOY_PAIR, ToyRecipe(seed=args.seed))
    print(json.dumps({k: v for k, v in report.items() if k != "recipe"}, indent=2))


if __name__ == "__main__":
    main()
