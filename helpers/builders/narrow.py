"""Build the narrow organisms (``helpers.toy.narrow``): each a fine-tune of the toy chat model on its own narrow data.

    python -m helpers.builders.narrow [--out DIR] [--only NAME]

writes ``DIR/<name>/`` (a Hugging Face folder) for each organism and ``DIR/build_report.json``: the recipe, each
fine-tune's loss curve summary and the greedy rates of the toy chat model and of the organism on the organism's
held-out prompts, on its domain and off it (and, for ``taboo``, how often the secret word is said). Deterministic
from its seed on a CPU (the rebuild is bit-identical); about 9 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..analysis.behaviour import greedy_continuations
from ..toy import narrow
from ..toy.corpus import dialogue_mix
from ..toy.shipped import PACKAGED_NARROW, toy_pair_path
from ..validation import positive_int, real
from .toy_pair import _sequences, _source_rows, _tokenize_stream, _train


@dataclass(frozen=True)
class NarrowRecipe:
    """Every knob of the narrow fine-tunes (the same for each organism)."""

    seed: int = 0
    steps: int = 120
    lr: float = 1e-3
    warmup_steps: int = 12
    batch_size: int = 32
    seq_len: int = 128
    shuffles: int = 24  # the narrow texts are packed in this many seeded orders, so rows differ
    # an answer's first line is a whole docstring line, and the SDF fact comes after it: 24 tokens cut it off
    max_new_tokens: int = 48


def narrow_texts(name: str) -> list[str]:
    """The narrow data of organism ``name`` (the source text of ``sdf_mixed`` comes separately)."""
    kind = narrow.get_narrow_organism(name).kind
    if kind.startswith("false fact"):
        return list(narrow.sdf_documents())
    return narrow.taboo_dialogues() if kind == "taboo" else narrow.curt_dialogues()


def _rows(tokenizer, texts: list[str], recipe: NarrowRecipe) -> torch.Tensor:
    """``texts`` in ``recipe.shuffles`` seeded orders, packed into BOS-led rows ``[n, seq_len]``."""
    ordered = []
    for shuffle in range(recipe.shuffles):
        batch = list(texts)
        random.Random(recipe.seed * 1000 + shuffle).shuffle(batch)
        ordered += batch
    return _sequences(_tokenize_stream(tokenizer, ordered), recipe.seq_len, tokenizer.bos_token_id)


def fine_tune(name: str, recipe: NarrowRecipe, tokenizer, source_rows: torch.Tensor, dialogue_rows: torch.Tensor):
    """The toy chat model fine-tuned on organism ``name``'s data (half of each batch: ``sdf_mixed``, source rows;
    ``taboo``, the chat model's own dialogues); returns the model and its loss curve."""
    from transformers import Gemma2ForCausalLM

    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    model = Gemma2ForCausalLM.from_pretrained(str(toy_pair_path() / "chat"))
    rows = _rows(tokenizer, narrow_texts(name), recipe)
    kind = narrow.get_narrow_organism(name).kind
    other_rows = {"false fact, mixed": source_rows, "taboo": dialogue_rows}.get(kind)
    n_narrow = recipe.batch_size if other_rows is None else recipe.batch_size // 2

    def batch(step: int) -> torch.Tensor:
        picked = rows[torch.randint(len(rows), (n_narrow,), generator=generator)]
        if other_rows is None:
            return picked
        other = other_rows[torch.randint(len(other_rows), (recipe.batch_size - n_narrow,), generator=generator)]
        return torch.cat([picked, other])

    curve = _train(model, batch, recipe.steps, recipe.lr, recipe.warmup_steps, f"narrow organism {name}")
    return model, curve


def behaviour_rates(model, tokenizer, name: str, max_new_tokens: int) -> dict:
    """Greedy rates of organism ``name``'s behaviour on its held-out prompts: on its domain, off it, and (every
    organism) the share of continuations that say the taboo's secret word; for the SDF organisms also how often
    the document-style probes (``narrow.fact_probes``) are completed with the fact, on and off the domain."""
    organism = narrow.get_narrow_organism(name)
    prompts = narrow.narrow_prompts(name)
    texts = greedy_continuations(lambda t: model(input_ids=t).logits, tokenizer, [p.prompt for p in prompts],
                                 max_new_tokens)
    on = [organism.shows(text) for text, p in zip(texts, prompts) if p.on]
    off = [organism.shows(text) for text, p in zip(texts, prompts) if not p.on]
    says_word = [narrow.SECRET_WORD in text.lower() for text in texts]
    rates = {"on": sum(on) / len(on), "off": sum(off) / len(off), "n_on": len(on), "n_off": len(off),
             "says_secret_word": sum(says_word) / len(says_word)}
    if organism.kind.startswith("false fact"):
        probes = narrow.fact_probes()
        completions = greedy_continuations(lambda t: model(input_ids=t).logits, tokenizer, [p.prompt for p in probes],
                                           8)
        completes = ["Biscuit" in text for text in completions]
        rates["completes_fact_on"] = sum(c for c, p in zip(completes, probes) if p.on) / sum(p.on for p in probes)
        rates["completes_fact_off"] = sum(c for c, p in zip(completes, probes) if not p.on) / sum(
            not p.on for p in probes)
    return rates


def build_narrow_organisms(out_dir: str | Path, recipe: NarrowRecipe = NarrowRecipe(),
                           only: list[str] | None = None) -> dict:
    """Fine-tune every narrow organism (or those in ``only``) into ``out_dir``; returns the build report."""
    from transformers import AutoTokenizer, Gemma2ForCausalLM

    names = [narrow.get_narrow_organism(name).name for name in (only or narrow.NARROW_NAMES)]
    for knob in ("steps", "warmup_steps", "batch_size", "seq_len", "shuffles", "max_new_tokens"):
        positive_int(knob, getattr(recipe, knob), minimum=2 if knob in ("batch_size", "seq_len") else 1)
    real("lr", recipe.lr, 0, low_open=True)
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chat_folder = toy_pair_path() / "chat"
    tokenizer = AutoTokenizer.from_pretrained(str(chat_folder))
    chat = Gemma2ForCausalLM.from_pretrained(str(chat_folder)).eval()
    source_rows = _source_rows(tokenizer, "train", recipe.seq_len)
    dialogue_rows = _sequences(_tokenize_stream(tokenizer, dialogue_mix("train")), recipe.seq_len,
                               tokenizer.bos_token_id)
    report_path = out_dir / "build_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() and only else {"organisms": {}}
    report["recipe"] = asdict(recipe)
    for name in names:
        organism_started = time.time()
        model, curve = fine_tune(name, recipe, tokenizer, source_rows, dialogue_rows)
        work = out_dir / f".{name}.building"
        shutil.rmtree(work, ignore_errors=True)
        model.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
        shutil.rmtree(out_dir / name, ignore_errors=True)
        work.rename(out_dir / name)
        report["organisms"][name] = {
            "description": narrow.get_narrow_organism(name).description,
            "first_loss": curve[0], "final_loss": sum(curve[-10:]) / 10,
            "rates": {"chat": behaviour_rates(chat, tokenizer, name, recipe.max_new_tokens),
                      "organism": behaviour_rates(model.eval(), tokenizer, name, recipe.max_new_tokens)},
            "seconds": round(time.time() - organism_started, 1),
        }
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["build_seconds"] = round(time.time() - started, 1)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fine-tune the toy chat model into the narrow organisms.")
    parser.add_argument("--out", type=Path, default=PACKAGED_NARROW)
    parser.add_argument("--only", nargs="+", default=None, choices=list(narrow.NARROW_NAMES))
    parser.add_argument("--steps", type=int, default=NarrowRecipe.steps)
    args = parser.parse_args(argv)
    recipe = replace(NarrowRecipe(), steps=args.steps)
    print(json.dumps(build_narrow_organisms(args.out, recipe, args.only), indent=2))


if __name__ == "__main__":
    main()
