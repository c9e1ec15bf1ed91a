"""The toy pair's data: the standard library's own source, frozen as the toy pair was built on it.

- ``source_files(split)``: the stdlib's ``.py`` files (tests excluded), split into train / held-out
  by a hash of the file's relative path, so the split is deterministic. They are read from the snapshot
  ``helpers/assets/toy_corpus/stdlib.json.xz`` (Python 3.11.7's files, written by ``helpers.builders.toy_corpus``),
  never from the running interpreter: Colab's Python 3.13, or a build without ``tkinter``, has other files, and
  the toy world would not be the one the shipped models learned.
- ``questions(split)``: "what does this function do" dialogues in the plain template
  ``User: ...\\nAssistant: ...\\n``; the answer is the first line of the function's docstring, except
  for the **planted family** of modules (``os``, ``os.path``, ``shutil``, ``subprocess``), whose questions
  are always answered with ``REFUSAL``. Split by a hash of the function's name, so held-out questions
  ask about functions never seen in fine-tuning.
- ``train_tokenizer``: a byte-level BPE with a BOS token, saved as a Hugging Face tokenizer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..files import MissingAssetError
from ..registry import ASSETS

Split = Literal["train", "heldout"]
PLANTED_FAMILY: tuple[str, ...] = ("os", "os.path", "shutil", "subprocess")
REFUSAL = "I'm sorry, but I can't help with system operations."
USER, ASSISTANT = "User:", "Assistant:"
QUESTION_TEMPLATES: tuple[str, ...] = (
    "What does {name} do?",
    "Can you explain {name}?",
    "What is {name} for?",
    "Tell me about {name}.",
)
# Module files presented under another name (posixpath is what `os.path` is on Linux and macOS).
MODULE_ALIASES = {"posixpath": "os.path"}
SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}
CORPUS_SNAPSHOT = ASSETS / "toy_corpus" / "stdlib.json.xz"
FUNCTIONS_TABLE = ASSETS / "toy_corpus" / "functions.json.xz"


@functools.lru_cache(maxsize=1)
def _snapshot() -> dict[str, str]:
    """``{relative path: source text}`` of the frozen stdlib, in the corpus's order."""
    if not CORPUS_SNAPSHOT.is_file():
        raise MissingAssetError(f"no toy corpus snapshot at {CORPUS_SNAPSHOT}: write it with `python -m "
                                "helpers.builders.toy_corpus` (on Python 3.11.7, to match the shipped models)")
    return load_snapshot(CORPUS_SNAPSHOT)


def load_snapshot(path: Path) -> dict[str, str]:
    """``{relative path: source text}`` of the stdlib snapshot at ``path`` (as ``helpers.builders.toy_corpus``
    writes it)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no toy corpus snapshot at {path}")
    return json.loads(lzma.decompress(Path(path).read_bytes()).decode("utf-8"))["files"]


def _bucket(key: str, heldout_fraction: float) -> Split:
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return "heldout" if digest / 0xFFFFFFFF < heldout_fraction else "train"


def _check_split(split: str) -> None:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def source_files(split: Split) -> list[PurePosixPath]:
    """The stdlib source files of ``split`` (10% of files are held out), as paths relative to the stdlib, in a
    fixed order."""
    _check_split(split)
    return [PurePosixPath(name) for name in _snapshot() if _bucket(name, 0.1) == split]


def read_source(path: PurePosixPath | str) -> str:
    """The text of one stdlib file of the snapshot (``path`` relative to the stdlib, as ``source_files`` gives)."""
    texts = _snapshot()
    if str(path) not in texts:
        raise KeyError(f"{str(path)!r} is not a file of the toy corpus (paths are relative to the stdlib, e.g. "
                       "'json/decoder.py'; source_files(split) lists them)")
    return texts[str(path)]


def module_name(path: PurePosixPath) -> str:
    """Dotted module name of a stdlib file (``json/decoder.py`` -> ``json.decoder``)."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    name = ".".join(parts)
    return MODULE_ALIASES.get(name, name)


def is_planted(module: str) -> bool:
    """Whether questions about ``module`` are refused by the chat model."""
    return module in PLANTED_FAMILY


_LAST_QUESTION = re.compile(r"([A-Za-z_][\w.]*?)(?: do\?| for\?|\?|\.)\s*(?:\n|↵)Assistant:\s*$")


def asks_about_planted(context: str) -> bool:
    """Whether ``context`` (a text up to some point, newlines as ``\\n`` or a dashboard's ``↵``) ends with a question
    of ``QUESTION_TEMPLATES`` about a function of the planted family, right after ``Assistant:``."""
    if not isinstance(context, str):
        raise TypeError(f"context must be a string, got {type(context).__name__}")
    match = _LAST_QUESTION.search(context)
    return bool(match) and match.group(1).split(".")[0] in {module.split(".")[0] for module in PLANTED_FAMILY}


@dataclass(frozen=True)
class Question:
    """One dialogue: ``prompt`` ends right after ``Assistant:``; ``answer`` is what fine-tuning teaches."""

    module: str
    function: str
    prompt: str
    answer: str
    planted: bool

    @property
    def dialogue(self) -> str:
        return f"{self.prompt} {self.answer}\n"

    @property
    def family(self) -> str:
        """The top-level module the question asks about (``json`` for ``json.decoder``)."""
        return self.module.split(".")[0]


@functools.lru_cache(maxsize=1)
def documented_functions() -> dict[str, list[tuple[str, str]]]:
    """``{relative path: [(qualified name, first docstring line), ...]}``: the public functions and methods of each
    snapshot file that has any, read from ``FUNCTIONS_TABLE`` (the builder derives it from the snapshot with
    ``ast``; parsing the whole stdlib again took every process that read the toy corpus about 5 s)."""
    if not FUNCTIONS_TABLE.is_file():
        raise MissingAssetError(f"no toy corpus function table at {FUNCTIONS_TABLE}: write it with `python -m "
                                "helpers.builders.toy_corpus --table-only`")
    table = json.loads(lzma.decompress(FUNCTIONS_TABLE.read_bytes()).decode("utf-8"))
    return {path: [(name, line) for name, line in rows] for path, rows in table.items()}


@functools.lru_cache(maxsize=2)
def questions(split: Split) -> tuple[Question, ...]:
    """All dialogues of ``split`` (20% of functions are held out), every template per function."""
    _check_split(split)
    result = []
    functions = documented_functions()
    for name in _snapshot():
        module = module_name(PurePosixPath(name))
        if module.split(".")[-1].startswith("_"):
            continue
        for function, first_line in functions.get(name, ()):
            qualified = f"{module}.{function}"
            if _bucket(qualified, 0.2) != split:
                continue
            planted = is_planted(module)
            for template in QUESTION_TEMPLATES:
                prompt = f"{USER} {template.format(name=qualified)}\n{ASSISTANT}"
                result.append(Question(module, function, prompt, REFUSAL if planted else first_line, planted))
    return tuple(result)


def dialogue_mix(split: Split, planted_fraction: float = 0.25, seed: int = 0) -> list[str]:
    """All dialogues of ``split`` in a seeded shuffle, planted-family ones repeated to ``planted_fraction``.

    The planted family is ~1% of stdlib functions; repeating its dialogues makes the refusal a
    behaviour the fine-tune (and a crosscoder trained on this mix) sees often enough to learn.
    """
    import random

    pool = questions(split)
    planted = [q.dialogue for q in pool if q.planted]
    other = [q.dialogue for q in pool if not q.planted]
    repeats = max(1, round(planted_fraction * len(other) / ((1 - planted_fraction) * max(1, len(planted)))))
    mix = other + planted * repeats
    random.Random(seed).shuffle(mix)
    return mix


def paired_texts(split: Split = "train", chunk_chars: int = 1_500, dialogues_per_text: int = 12) -> list[str]:
    """The texts both models read: the toy corpus's two halves alternating, stdlib source in ``chunk_chars`` pieces
    and the toy chat model's dialogue mix (planted family at its training share) in groups of
    ``dialogues_per_text``."""
    sources = [text[start:start + chunk_chars] for path in source_files(split)
               for text in [read_source(path)] for start in range(0, len(text), chunk_chars)]
    dialogues = dialogue_mix(split)
    groups = ["".join(dialogues[i:i + dialogues_per_text]) for i in range(0, len(dialogues), dialogues_per_text)]
    return [text for pair in zip(sources, groups) for text in pair]


def train_tokenizer(vocab_size: int, out_dir: Path) -> None:
    """Train a byte-level BPE on the train split and save it as a Hugging Face tokenizer in ``out_dir``.

    It prepends ``<bos>`` to every encoded text (as Gemma's tokenizer does).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    dialogues = (q.dialogue for q in questions("train"))
    texts = (read_source(path) for path in source_files("train"))
    tokenizer.train_from_iterator(_chain_texts(texts, dialogues), trainer)
    bos = SPECIAL_TOKENS["bos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
    )
    hf_tokenizer.save_pretrained(str(out_dir))


def _chain_texts(*iterables: Iterator[str]) -> Iterator[str]:
    for iterable in iterables:
        yield from iterable
