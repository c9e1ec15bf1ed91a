"""An offline rehearsal of the Hugging Face Hub: the Gemma-2-2B path and "your own pair", with tiny weights.

``python -m helpers.builders.rehearsal DIR`` writes a Hugging Face home folder; with ``HF_HOME=DIR HF_HUB_OFFLINE=1``,
``huggingface_hub``, ``transformers``, ``datasets`` and TransformerLens resolve it exactly as the real Hub:

- ``google/gemma-2-2b`` and ``google/gemma-2-2b-it``: Gemma-2 models with the real config's keys and
  architecture (26 layers, logit soft-capping, sliding window, ``query_pre_attn_scalar``, tied embeddings) at
  the toy's width, carrying the toy pair's trained weights so that the replication's site reads exactly the
  toy's ``blocks.3.hook_resid_post`` (``helpers.builders.rehearsal_gemma``), and a tokenizer with Gemma's special tokens
  at Gemma's ids and the IT model's chat template;
- ``ckkissane/crosscoder-gemma-2-2b-model-diff``: the replication's crosscoder in its layout
  (``<hook point>/cfg.json`` + ``cc_weights.pt``), and the two science-of-finetuning crosscoders
  (``config.json`` + ``model.safetensors``, L1 and BatchTopK) at layer 13: the toy releases, rewritten;
- ``ckkissane/pile-lmsys-mix-1m-tokenized-gemma-2``: pre-tokenised rows (``input_ids``) of the toy corpus in the
  Hub layout (parquet) and in the ``datasets`` cache, as a previous download leaves it;
- "your own pair": ``rehearsal/llama-base`` and ``rehearsal/llama-instruct`` (a tiny Llama with its own byte-level
  tokenizer and Llama-3-style chat template, trained on the toy corpus: ``helpers.builders.rehearsal_llama``), a text
  dataset ``rehearsal/text``, a chat dataset ``rehearsal/chat`` (``messages`` column), and a crosscoder
  ``rehearsal/llama-crosscoder`` (native format) trained on that data while the rehearsal is built.

Real ids, file names and formats; only the weights and sizes are stand-ins, and they are trained, so that the
tutorials' claims can hold on them. ``OWN_PAIR`` is the ``register_pair`` call for the own pair;
``write_registry`` writes a registry file for ``CROSSCODER_REGISTRY`` with the own pair, its crosscoder and the
records of the Gemma stand-ins; ``rehearsal_env`` is the environment that points a process at the rehearsal.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

import torch

from ..activations.data import ToyTokenSource
from ..registry import get_pair, get_release
from ..toy import corpus as toy_corpus
from ..toy.shipped import toy_pair_path
from .rehearsal_gemma import (
    residual_scales,
    token_map,
    toy_offset,
    write_dictionary_learning_crosscoder,
    write_gemma_models,
    write_replication_crosscoder,
)
from .rehearsal_llama import LLAMA_RECIPE

# the real ids, from the registry that the rest of the package reads them from
GEMMA = get_pair("gemma-2-2b")
GEMMA_BASE, GEMMA_IT = GEMMA.base, GEMMA.chat
REPLICATION = get_release("gemma-2-2b-l14-replication")
REPLICATION_REPO = REPLICATION.repo_id
SOF_L1, SOF_BATCHTOPK = get_release("gemma-2-2b-l13-l1"), get_release("gemma-2-2b-l13-batchtopk")
SOF_L1_REPO, SOF_BATCHTOPK_REPO = SOF_L1.repo_id, SOF_BATCHTOPK.repo_id
REPLICATION_DATASET = GEMMA.data["tokenized"]["path"]
TOY_L1, TOY_BATCHTOPK = "toy-l3", "toy-l3-batchtopk"  # what the Gemma crosscoders stand in with
DATASET_ROWS = 1200
# The notebooks CI runs against the rehearsal (at the smoke scale), per pair profile. Notebook 08 scores methods
# on the toy organisms, whose ground truth only the toy pair has.
REHEARSED_NOTEBOOKS = {"gemma-2-2b": ("00", "01", "02", "03", "04", "05", "06", "07"),
                       "rehearsal-llama": ("02", "04", "05")}
OWN_BASE, OWN_CHAT, OWN_CROSSCODER = "rehearsal/llama-base", "rehearsal/llama-instruct", "rehearsal/llama-crosscoder"
OWN_TEXT, OWN_CHAT_DATA = "rehearsal/text", "rehearsal/chat"
# the own pair's site: the output of its middle block
OWN_PAIR = dict(name="rehearsal-llama", base=OWN_BASE, chat=OWN_CHAT,
                hook_point=f"blocks.{LLAMA_RECIPE.n_layers // 2}.hook_resid_post",
                data={"kind": "hub", "text": {"path": OWN_TEXT, "column": "text"},
                      "chat": {"path": OWN_CHAT_DATA, "column": "messages"}})
OWN_RELEASE = "rehearsal-llama-l2"
# the own pair's crosscoder, trained when the rehearsal is built (about 20 s): L1, as notebook 02 trains
OWN_TRAINING = {"d_hidden": 1024, "num_tokens": 409_600, "batch_size": 1024, "lr": 2e-3, "seq_len": 128}


def snapshot(home: Path, repo_id: str, kind: str = "models") -> Path:
    """The snapshot folder of ``repo_id`` in the Hub cache under ``home`` (created, with ``refs/main``)."""
    folder = home / "hub" / f"{kind}--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"rehearsal:{repo_id}".encode()).hexdigest()
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_gemma(home: Path) -> None:
    """Gemma-2-2B and -IT, the replication's crosscoder and science-of-finetuning's two, all from the toy pair and
    its releases (``helpers.builders.rehearsal_gemma``), and the replication's dataset: the toy corpus as rows of 1,024
    stand-in token ids, BOS first, half source text and half dialogues (as the Pile / LmSys-Chat mix)."""
    from transformers import AutoTokenizer

    offset = toy_offset(REPLICATION.hook_point, get_release(TOY_L1).hook_point)
    scales = residual_scales(TOY_L1, REPLICATION.scale_factors)
    write_gemma_models(snapshot(home, GEMMA_BASE), snapshot(home, GEMMA_IT), offset, scales)
    write_replication_crosscoder(snapshot(home, REPLICATION_REPO) / REPLICATION.subfolder, TOY_L1,
                                 REPLICATION.scale_factors, REPLICATION.hook_point, scales)
    write_dictionary_learning_crosscoder(snapshot(home, SOF_L1_REPO), TOY_L1, scales)
    write_dictionary_learning_crosscoder(snapshot(home, SOF_BATCHTOPK_REPO), TOY_BATCHTOPK, scales)
    toy_tokenizer = AutoTokenizer.from_pretrained(toy_pair_path() / "base")
    rows = ToyTokenSource(toy_tokenizer, seq_len=1024, seed=0).next_batch(DATASET_ROWS)
    gemma_ids = token_map(len(toy_tokenizer))[rows]
    write_dataset(home, REPLICATION_DATASET, [{"input_ids": row} for row in gemma_ids.tolist()])


def write_dataset(home: Path, repo_id: str, rows: list[dict]) -> None:
    """``rows`` as ``repo_id``'s train split: parquet in the Hub layout, and the ``datasets`` cache a download
    leaves (what ``load_dataset(repo_id)`` reads with ``HF_HUB_OFFLINE=1``)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = snapshot(home, repo_id, "datasets") / "data"
    data.mkdir(exist_ok=True)
    parquet = data / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    with tempfile.TemporaryDirectory() as scratch:
        datasets.load_dataset("parquet", data_files={"train": str(parquet)}, cache_dir=scratch)
        built = next(Path(scratch).glob("parquet/*/0.0.0/*/dataset_info.json")).parent
        name = repo_id.split("/")[1]
        commit = hashlib.sha1(f"rehearsal:{repo_id}".encode()).hexdigest()
        target = home / "datasets" / repo_id.replace("/", "___") / "default" / "0.0.0" / commit
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(built / "dataset_info.json", target / "dataset_info.json")
        shutil.copy(built / "parquet-train.arrow", target / f"{name}-train.arrow")


def rehearsal_env(home: Path, pair: str = "gemma-2-2b", scale: str = "smoke") -> dict[str, str]:
    """The environment variables that point a process (a notebook kernel) at the rehearsal in ``home``, as the
    real Hub would be reached, with ``pair`` as the notebooks' pair and ``scale`` as ``CROSSCODER_SCALE``."""
    home = Path(home).resolve()
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "rehearsal-token",
            "CROSSCODER_REGISTRY": str(home / "registry.yaml"), "CROSSCODER_PAIR": pair, "CROSSCODER_SCALE": scale}


def write_own_pair(home: Path) -> dict[str, float]:
    """The own pair (``helpers.builders.rehearsal_llama``'s shipped models), its text and chat datasets,
    and its crosscoder, trained here on that data through the public API (the snapshots as local folders);
    returns the crosscoder's record (``expected``: final L0 and explained variance per model)."""
    from ..activations.data import MixedTokenSource
    from ..activations.hub_data import HFTokenSource
    from ..activations.models import load_model_pair
    from ..crosscoder.checkpoints import save
    from ..training.recipes import make_buffer, new_crosscoder
    from ..training.trainer import TrainConfig, Trainer
    from .rehearsal_llama import conversations, llama_path

    for role, repo_id in (("base", OWN_BASE), ("chat", OWN_CHAT)):
        shutil.copytree(llama_path() / role, snapshot(home, repo_id), dirs_exist_ok=True)
    texts = [toy_corpus.read_source(p) for p in toy_corpus.source_files("train")[:200]]
    write_dataset(home, OWN_TEXT, [{"text": text} for text in texts])
    write_dataset(home, OWN_CHAT_DATA, [{"messages": messages} for messages in conversations("train")])
    torch.manual_seed(0)
    pair = load_model_pair(str(snapshot(home, OWN_BASE)), str(snapshot(home, OWN_CHAT)),
                           hook_point=OWN_PAIR["hook_point"])
    seq_len = OWN_TRAINING["seq_len"]
    text, chat = (HFTokenSource(path=str(snapshot(home, repo_id, "datasets")), column=column, tokenizer=pair.tokenizer,
                                seq_len=seq_len, chat_tokenizer=pair.models[1].tokenizer)
                  for repo_id, column in ((OWN_TEXT, "text"), (OWN_CHAT_DATA, "messages")))
    buffer = make_buffer(pair, MixedTokenSource(text, chat), buffer_tokens=32_768)
    crosscoder = new_crosscoder(pair, buffer, scale_tokens=8192, d_hidden=OWN_TRAINING["d_hidden"])
    history = Trainer(crosscoder, buffer, TrainConfig(num_tokens=OWN_TRAINING["num_tokens"],
                                                      batch_size=OWN_TRAINING["batch_size"], lr=OWN_TRAINING["lr"],
                                                      log_every=50)).train()
    crosscoder.cfg.model_names = [OWN_BASE, OWN_CHAT]
    save(crosscoder, snapshot(home, OWN_CROSSCODER))
    final = history[-1]
    return {"l0": round(final["l0"], 1), "fve_base": round(final["explained_variance_base"], 3),
            "fve_chat": round(final["explained_variance_chat"], 3)}


def write_registry(home: Path, own_expected: dict[str, float]) -> Path:
    """``home/registry.yaml``, for ``CROSSCODER_REGISTRY``: the own pair with its crosscoder (``own_expected``: its
    record), and the Gemma releases with the records (``expected``) of the toy releases their stand-ins carry,
    since published numbers describe the real weights."""
    import yaml

    def stand_in(release, toy_release: str) -> dict:
        source = {"repo_id": release.repo_id, **({"subfolder": release.subfolder} if release.subfolder else {})}
        scale = {"scale_factors": list(release.scale_factors)} if release.scale_factors else {}
        return {"description": f"rehearsal: {toy_release} standing in for {release.description}",
                "pair": release.pair, "hook_point": release.hook_point, "format": release.format, "source": source,
                **scale, "expected": dict(get_release(toy_release).expected)}

    releases = {REPLICATION.name: stand_in(REPLICATION, TOY_L1),
                SOF_L1.name: stand_in(SOF_L1, TOY_L1), SOF_BATCHTOPK.name: stand_in(SOF_BATCHTOPK, TOY_BATCHTOPK),
                OWN_RELEASE: {"description": "rehearsal: L1 crosscoder on the own pair, trained when the rehearsal "
                                             f"was built ({OWN_TRAINING})", "pair": OWN_PAIR["name"],
                              "hook_point": OWN_PAIR["hook_point"], "format": "native",
                              "source": {"repo_id": OWN_CROSSCODER}, "expected": own_expected}}
    own = {key: value for key, value in OWN_PAIR.items() if key not in ("name", "hook_point")}
    pairs = {OWN_PAIR["name"]: {**own, "release": OWN_RELEASE, "like": "gemma-2-2b"}}
    path = home / "registry.yaml"
    path.write_text(yaml.safe_dump({"releases": releases, "pairs": pairs}, sort_keys=False))
    return path


def build(home: str | Path) -> Path:
    """Write the whole rehearsal into the Hugging Face home folder ``home`` (see the module docstring)."""
    home = Path(home)
    write_gemma(home)
    write_registry(home, write_own_pair(home))  # the registry last: its presence says the build finished
    return home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an offline, Hub-shaped stand-in (use with HF_HOME, "
                                                 "HF_HUB_OFFLINE=1 and CROSSCODER_REGISTRY).")
    parser.add_argument("home", type=Path, help="the folder to use as HF_HOME")
    home = build(parser.parse_args(argv).home).resolve()
    print(f"rehearsal written: HF_HOME={home} HF_HUB_OFFLINE=1 CROSSCODER_REGISTRY={home / 'registry.yaml'}")


if __name__ == "__main__":
    main()
