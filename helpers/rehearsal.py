"""An offline rehearsal of the Hugging Face Hub: the Gemma-2-2B path and "your own pair", with tiny weights.

``python -m helpers.rehearsal DIR`` writes a Hugging Face home folder; with ``HF_HOME=DIR HF_HUB_OFFLINE=1``,
``huggingface_hub``, ``transformers``, ``datasets`` and TransformerLens resolve it exactly as the real Hub:

- ``google/gemma-2-2b`` and ``google/gemma-2-2b-it``: random-weight Gemma-2 models with the real config's keys
  and architecture (26 layers, logit soft-capping, sliding window, ``query_pre_attn_scalar``, tied embeddings)
  at width 64, and a tokenizer with Gemma's special tokens at Gemma's ids and the IT model's chat template;
- ``ckkissane/crosscoder-gemma-2-2b-model-diff``: the replication's crosscoder in its layout
  (``<hook point>/cfg.json`` + ``cc_weights.pt``); the two science-of-finetuning crosscoders
  (``config.json`` + ``model.safetensors``, L1 and BatchTopK k=100) at layer 13;
- ``ckkissane/pile-lmsys-mix-1m-tokenized-gemma-2``: pre-tokenised rows (``input_ids``) in the Hub layout
  (parquet) and in the ``datasets`` cache, as a previous download leaves it;
- "your own pair": ``rehearsal/llama-base`` and ``rehearsal/llama-instruct`` (a tiny Llama architecture with its
  own byte-level tokenizer and Llama-3-style chat template), a text dataset ``rehearsal/text`` and a chat dataset
  ``rehearsal/chat`` (``messages`` column).

Real ids, file names and formats; only the weights and sizes are stand-ins, so everything runs but nothing
means anything. ``OWN_PAIR`` is the ``register_pair`` call for the own pair.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch

from . import toy_corpus
from .registry import get_pair, get_release

# the real ids, from the registry that the rest of the package reads them from
GEMMA = get_pair("gemma-2-2b")
GEMMA_BASE, GEMMA_IT = GEMMA.base, GEMMA.chat
REPLICATION = get_release("gemma-2-2b-l14-replication")
REPLICATION_REPO = REPLICATION.repo_id
SOF_L1_REPO = get_release("gemma-2-2b-l13-l1").repo_id
SOF_BATCHTOPK_REPO = get_release("gemma-2-2b-l13-batchtopk").repo_id
REPLICATION_DATASET = GEMMA.data["tokenized"]["path"]
D_MODEL, VOCAB, OWN_LAYERS = 64, 1024, 4
OWN_BASE, OWN_CHAT, OWN_TEXT, OWN_CHAT_DATA = ("rehearsal/llama-base", "rehearsal/llama-instruct",
                                               "rehearsal/text", "rehearsal/chat")
OWN_PAIR = dict(name="rehearsal-llama", base=OWN_BASE, chat=OWN_CHAT,
                hook_point=f"blocks.{OWN_LAYERS // 2}.hook_resid_post",
                data={"kind": "hub", "text": {"path": OWN_TEXT, "column": "text"},
                      "chat": {"path": OWN_CHAT_DATA, "column": "messages"}})

# Gemma's published chat template (tokenizer_config.json of google/gemma-2-2b-it)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Gemma's special tokens at their real ids: 0-6, <unused0..98> at 7-105, turn markers at 106 and 107
GEMMA_SPECIALS = (["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<2mass>", "[@BOS@]"]
                  + [f"<unused{i}>" for i in range(99)] + ["<start_of_turn>", "<end_of_turn>"])
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def snapshot(home: Path, repo_id: str, kind: str = "models") -> Path:
    """The snapshot folder of ``repo_id`` in the Hub cache under ``home`` (created, with ``refs/main``)."""
    folder = home / "hub" / f"{kind}--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"rehearsal:{repo_id}".encode()).hexdigest()
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit
    path.mkdir(parents=True, exist_ok=True)
    return path


def _training_texts() -> list[str]:
    texts = [toy_corpus.read_source(p) for p in toy_corpus.source_files("train")[:40]]
    return texts + [q.dialogue for q in toy_corpus.questions("train")[:400]]


def gemma_tokenizer():
    """A 1,024-token SentencePiece-style BPE with Gemma's special tokens at Gemma's ids and its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=GEMMA_SPECIALS)
    tokenizer.train_from_iterator(_training_texts(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                             special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA_CHAT_TEMPLATE
    return fast


def llama_tokenizer():
    """A 1,024-token byte-level BPE with Llama-3's special tokens and a Llama-3-style chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=LLAMA_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_texts(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|end_of_text|>")
    fast.chat_template = LLAMA_CHAT_TEMPLATE
    return fast


def gemma_config():
    """google/gemma-2-2b's config.json at width 64: every key and architectural choice, tiny sizes."""
    from transformers import Gemma2Config

    return Gemma2Config(vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=2 * D_MODEL, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=8, query_pre_attn_scalar=8,
                        sliding_window=4096, max_position_embeddings=8192, final_logit_softcapping=30.0,
                        attn_logit_softcapping=50.0, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
                        rope_theta=10000.0, pad_token_id=0, eos_token_id=1, bos_token_id=2, torch_dtype="float32")


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=2 * D_MODEL,
                       num_hidden_layers=OWN_LAYERS, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=2048,
                       bos_token_id=0, eos_token_id=1, tie_word_embeddings=False, torch_dtype="float32")


def write_models(home: Path, config, tokenizer, base_id: str, chat_id: str, drift: float = 0.03) -> None:
    """A random-weight base model of ``config`` and its stand-in fine-tune (every weight moved by ``drift``
    times its own scale, so that the two share most of what they compute), both with ``tokenizer``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    for repo_id in (base_id, chat_id):
        folder = snapshot(home, repo_id)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(drift * parameter.std().nan_to_num(0) * torch.randn_like(parameter))


def write_crosscoders(home: Path, d_hidden: int = 256) -> None:
    """The replication's crosscoder and science-of-finetuning's two, each in its own layout, at width 64."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    folder = snapshot(home, REPLICATION_REPO) / REPLICATION.subfolder
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(seed=49, batch_size=4096, buffer_mult=128, lr=5e-5, num_tokens=400_000_000, l1_coeff=2, beta1=0.9,
               beta2=0.999, d_in=D_MODEL, dict_size=d_hidden, seq_len=1024, enc_dtype="fp32", model_name="gemma-2-2b",
               site="resid_pre", device="cuda:0", model_batch_size=4, log_every=100, save_every=30000,
               dec_init_norm=0.08, hook_point=REPLICATION.hook_point, wandb_project="crosscoder",
               wandb_entity="ckkissane")
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    torch.save({"W_enc": 0.1 * torch.randn(2, D_MODEL, d_hidden, generator=generator),
                "W_dec": 0.1 * torch.randn(d_hidden, 2, D_MODEL, generator=generator),
                "b_enc": torch.zeros(d_hidden), "b_dec": torch.zeros(2, D_MODEL)}, folder / "cc_weights.pt")
    for repo_id, k in ((SOF_L1_REPO, None), (SOF_BATCHTOPK_REPO, 100)):
        folder = snapshot(home, repo_id)
        state = {"encoder.weight": 0.1 * torch.randn(2, D_MODEL, 2 * d_hidden, generator=generator),
                 "encoder.bias": torch.zeros(2 * d_hidden),
                 "decoder.weight": 0.1 * torch.randn(2, 2 * d_hidden, D_MODEL, generator=generator),
                 "decoder.bias": torch.zeros(2, D_MODEL), "code_normalization_id": torch.tensor(1),
                 "threshold": torch.tensor(0.05 if k else -1.0)}
        config = {"activation_dim": D_MODEL, "dict_size": 2 * d_hidden, "num_layers": 2, "same_init_for_all_layers":
                  True, "norm_init_scale": 0.005, "init_with_transpose": True, "encoder_layers": None,
                  "code_normalization": "CROSSCODER"}
        if k:
            state["k"], config["k"] = torch.tensor(k), k
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config, indent=2))


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


def build(home: str | Path) -> Path:
    """Write the whole rehearsal into the Hugging Face home folder ``home`` (see the module docstring)."""
    home = Path(home)
    write_models(home, gemma_config(), gemma_tokenizer(), GEMMA_BASE, GEMMA_IT)
    write_crosscoders(home)
    rng = random.Random(0)
    write_dataset(home, REPLICATION_DATASET,
                  [{"input_ids": [2] + [rng.randrange(108, VOCAB) for _ in range(1023)]} for _ in range(1200)])
    write_models(home, llama_config(), llama_tokenizer(), OWN_BASE, OWN_CHAT)
    texts = [toy_corpus.read_source(p) for p in toy_corpus.source_files("train")[:60]]
    write_dataset(home, OWN_TEXT, [{"text": text} for text in texts])
    questions = toy_corpus.questions("train")[:300]
    conversations = [[{"role": "user", "content": q.prompt.splitlines()[0].removeprefix("User: ")},
                      {"role": "assistant", "content": q.answer}] for q in questions]
    write_dataset(home, OWN_CHAT_DATA, [{"messages": messages} for messages in conversations])
    return home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an offline, Hub-shaped stand-in (use with HF_HOME, "
                                                 "HF_HUB_OFFLINE=1).")
    parser.add_argument("home", type=Path, help="the folder to use as HF_HOME")
    print(f"rehearsal written: HF_HOME={build(parser.parse_args(argv).home)} HF_HUB_OFFLINE=1")


if __name__ == "__main__":
    main()
