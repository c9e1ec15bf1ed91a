"""The rehearsal's Gemma-2-2B stand-ins: the toy pair and its crosscoders in Gemma-2-2B's shape and formats.

Random weights would let every line of the Gemma path run but no tutorial's claim hold. So the stand-ins carry
the toy pair's trained weights, laid out so that the Gemma path computes exactly what the toy pair computes:

- **Models.** A 26-layer Gemma-2 with the toy's width. The toy's four blocks sit at layers 10 to 13, so the
  output of block 13 (``blocks.13.hook_resid_post``, science-of-finetuning's "layer 13") and the input of block
  14 (``blocks.14.hook_resid_pre``, the replication's site) are the toy's ``blocks.3.hook_resid_post``. Every
  other block is an exact identity: Gemma's post-attention and post-MLP RMSNorms scale by ``1 + weight``, so a
  weight of -1 writes nothing to the residual stream (their output projections are zero as well).
- **Tokenizer.** The toy's byte-level BPE with Gemma's special tokens at Gemma's ids (``<pad>`` 0, ``<eos>`` 1,
  ``<bos>`` 2, ..., ``<start_of_turn>`` 106, ``<end_of_turn>`` 107): the toy's other tokens move up by 104
  (``TOKEN_MAP``), and the embedding rows move with them. Gemma's specials the toy has no row for get the
  toy's never-seen ``<unk>`` row, which the toy's tied unembedding has learnt never to predict.
- **Crosscoders.** The toy releases, written in the replication's layout (normalised-space weights, rescaled so
  that the replication's published scale factors, which the files do not store, give back the toy's function
  on raw activations) and in dictionary_learning's (with the activation statistics that format carries).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..activations.sites import hook_layer
from ..crosscoder.releases import load_release
from ..toy.shipped import toy_pair_path

# Gemma's special tokens at their real ids: 0-6, <unused0..98> at 7-105, turn markers at 106 and 107
GEMMA_SPECIALS = (["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<2mass>", "[@BOS@]"]
                  + [f"<unused{i}>" for i in range(99)] + ["<start_of_turn>", "<end_of_turn>"])
# the toy's special tokens (<pad> 0, <bos> 1, <eos> 2, <unk> 3) -> Gemma's ids
TOY_SPECIALS_TO_GEMMA = {0: 0, 1: 2, 2: 1, 3: 3}
TOY_UNK = 3
GEMMA_LAYERS = 26
# Gemma's published chat template (tokenizer_config.json of google/gemma-2-2b-it)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")


def token_map(toy_vocab_size: int) -> torch.Tensor:
    """``[toy_vocab_size]``: the stand-in Gemma id of every toy token id."""
    shift = len(GEMMA_SPECIALS) - len(TOY_SPECIALS_TO_GEMMA)
    mapping = torch.arange(toy_vocab_size) + shift
    for toy_id, gemma_id in TOY_SPECIALS_TO_GEMMA.items():
        mapping[toy_id] = gemma_id
    return mapping


def _toy_tokenizer_json() -> dict:
    return json.loads((toy_pair_path() / "base" / "tokenizer.json").read_text())


def gemma_tokenizer():
    """The toy's BPE with Gemma's special tokens at Gemma's ids and the IT model's chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = _toy_tokenizer_json()
    vocab = spec["model"]["vocab"]
    mapping = token_map(len(vocab)).tolist()
    names = dict(enumerate(GEMMA_SPECIALS))
    names.update({mapping[toy_id]: token for token, toy_id in vocab.items() if toy_id not in TOY_SPECIALS_TO_GEMMA})
    spec["model"]["vocab"] = {token: gemma_id for gemma_id, token in sorted(names.items())}
    spec["added_tokens"] = [{"id": gemma_id, "content": token, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}
                            for gemma_id, token in enumerate(GEMMA_SPECIALS)]
    spec["post_processor"]["special_tokens"]["<bos>"]["ids"] = [GEMMA_SPECIALS.index("<bos>")]
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token="<bos>",
                                   eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", padding_side="left",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA_CHAT_TEMPLATE
    return fast


def toy_offset(hook_point: str, toy_hook_point: str) -> int:
    """The first layer of the toy's blocks in the stand-in, so that ``hook_point`` reads what the toy's
    ``toy_hook_point`` reads (both counted as blocks run before the site)."""
    def blocks_before(site: str) -> int:
        return hook_layer(site) + (0 if site.endswith("hook_resid_pre") else 1)
    return blocks_before(hook_point) - blocks_before(toy_hook_point)


def gemma_config(toy_config, vocab_size: int):
    """google/gemma-2-2b's config.json (every key, 26 layers) at the toy's width and vocabulary."""
    from transformers import Gemma2Config

    return Gemma2Config(
        vocab_size=vocab_size, hidden_size=toy_config.hidden_size, intermediate_size=toy_config.intermediate_size,
        num_hidden_layers=GEMMA_LAYERS, num_attention_heads=toy_config.num_attention_heads,
        num_key_value_heads=toy_config.num_key_value_heads, head_dim=toy_config.head_dim,
        query_pre_attn_scalar=toy_config.query_pre_attn_scalar, sliding_window=4096, max_position_embeddings=8192,
        final_logit_softcapping=toy_config.final_logit_softcapping,
        attn_logit_softcapping=toy_config.attn_logit_softcapping, tie_word_embeddings=True,
        hidden_activation=toy_config.hidden_activation, rms_norm_eps=toy_config.rms_norm_eps, rope_theta=10000.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, torch_dtype="float32")


def gemma_model(role: str, offset: int, residual_scale: float = 1.0):
    """The toy's ``role`` model (``"base"`` or ``"chat"``) as a 26-layer Gemma-2 (see the module docstring),
    its residual stream ``residual_scale`` times the toy's: the embedding and every write into the stream are
    scaled (Gemma's RMSNorms scale by ``1 + weight``), and the final norm undoes it, so the logits are the toy's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    toy_folder = toy_pair_path() / role
    toy = AutoModelForCausalLM.from_pretrained(toy_folder, dtype=torch.float32)
    toy_state = toy.state_dict()
    toy_layers = AutoConfig.from_pretrained(toy_folder).num_hidden_layers
    mapping = token_map(toy.config.vocab_size)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(gemma_config(toy.config, int(mapping.max()) + 1))
    state = model.state_dict()
    with torch.no_grad():
        embed = toy_state["model.embed_tokens.weight"]
        rows = embed[TOY_UNK].expand(state["model.embed_tokens.weight"].shape).clone()
        rows[mapping] = embed
        state["model.embed_tokens.weight"] = rows * residual_scale
        state["model.norm.weight"] = (1 + toy_state["model.norm.weight"]) / residual_scale - 1
        for layer in range(GEMMA_LAYERS):
            prefix = f"model.layers.{layer}."
            if offset <= layer < offset + toy_layers:
                toy_prefix = f"model.layers.{layer - offset}."
                for key in [k for k in state if k.startswith(prefix)]:
                    state[key] = toy_state[toy_prefix + key.removeprefix(prefix)]
                for norm in ("post_attention_layernorm", "post_feedforward_layernorm"):
                    state[prefix + norm + ".weight"] = (1 + state[prefix + norm + ".weight"]) * residual_scale - 1
                continue
            for norm in ("post_attention_layernorm", "post_feedforward_layernorm"):
                state[prefix + norm + ".weight"] = torch.full_like(state[prefix + norm + ".weight"], -1.0)
            for projection in ("self_attn.o_proj", "mlp.down_proj"):
                state[prefix + projection + ".weight"] = torch.zeros_like(state[prefix + projection + ".weight"])
        state.pop("lm_head.weight", None)  # tied to the embedding
        model.load_state_dict(state, strict=False)
    return model


def residual_scales(toy_release: str, scale_factors: tuple[float, ...]) -> torch.Tensor:
    """``[n_models]``: how much larger the stand-ins' residual streams are than the toy's, so that the published
    ``scale_factors`` normalise them as ``toy_release``'s own factors normalise the toy's."""
    return load_release(toy_release).scale_factors / torch.tensor(scale_factors)


def write_gemma_models(base_folder: Path, chat_folder: Path, offset: int, scales: torch.Tensor) -> None:
    """The stand-in base and IT models (residual streams ``scales`` ``[2]`` times the toy's), each with the
    stand-in tokenizer, as the Hub serves them."""
    tokenizer = gemma_tokenizer()
    for role, folder, scale in (("base", base_folder, scales[0]), ("chat", chat_folder, scales[1])):
        gemma_model(role, offset, float(scale)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def write_replication_crosscoder(folder: Path, toy_release: str, scale_factors: tuple[float, ...],
                                 hook_point: str, scales: torch.Tensor) -> None:
    """``toy_release`` in the replication's layout (``cfg.json`` + ``cc_weights.pt``): weights for activations
    normalised by the replication's ``scale_factors`` (which its files do not store), so that on the stand-ins'
    raw activations (``scales`` ``[n_models]`` times the toy's) it computes what ``toy_release`` computes on the
    toy's. With ``residual_scales``'s scales the weights are the toy release's own."""
    crosscoder = load_release(toy_release)
    cfg = crosscoder.cfg
    if crosscoder.activation_mean.abs().sum() > 0:
        raise ValueError(f"{toy_release} centres its activations, which the replication's format cannot express")
    ratio = crosscoder.scale_factors / (torch.tensor(scale_factors) * scales)  # [n_models]; 1 for residual_scales
    state = {"W_enc": crosscoder.W_enc.detach() * ratio[:, None, None],
             "W_dec": crosscoder.W_dec.detach() / ratio[None, :, None],
             "b_enc": crosscoder.b_enc.detach().clone(), "b_dec": crosscoder.b_dec.detach() / ratio[:, None]}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "cc_weights.pt")
    replication_cfg = dict(seed=49, batch_size=4096, buffer_mult=128, lr=5e-5, num_tokens=400_000_000, l1_coeff=2,
                           beta1=0.9, beta2=0.999, d_in=cfg.d_model, dict_size=cfg.d_hidden, seq_len=1024,
                           enc_dtype="fp32", model_name="gemma-2-2b", site="resid_pre", device="cuda:0",
                           model_batch_size=4, log_every=100, save_every=30000, dec_init_norm=0.08,
                           hook_point=hook_point, wandb_project="crosscoder", wandb_entity="ckkissane")
    (folder / "cfg.json").write_text(json.dumps(replication_cfg, indent=2))


def write_dictionary_learning_crosscoder(folder: Path, toy_release: str, scales: torch.Tensor) -> None:
    """``toy_release`` in dictionary_learning's layout (``config.json`` + ``model.safetensors``) for the
    stand-ins' activations (``scales`` ``[n_models]`` times the toy's), its normalisation as that format's
    activation statistics: ``scale = target_rms / sqrt(sum_d std^2)``."""
    from safetensors.torch import save_file

    crosscoder = load_release(toy_release)
    cfg = crosscoder.cfg
    per_dimension_std = scales / (crosscoder.scale_factors * cfg.d_model ** 0.5)  # [n_models]
    state = {"encoder.weight": crosscoder.W_enc.detach().clone(), "encoder.bias": crosscoder.b_enc.detach().clone(),
             "decoder.weight": crosscoder.W_dec.detach().permute(1, 0, 2).contiguous(),
             "decoder.bias": crosscoder.b_dec.detach().clone(), "code_normalization_id": torch.tensor(1),
             "threshold": crosscoder.threshold.detach().clone().reshape(()),
             "activation_mean": crosscoder.activation_mean.detach().clone(),
             "activation_std": per_dimension_std[:, None].expand(cfg.n_models, cfg.d_model).contiguous(),
             "target_rms": torch.tensor(1.0)}
    config = {"activation_dim": cfg.d_model, "dict_size": cfg.d_hidden, "num_layers": cfg.n_models,
              "same_init_for_all_layers": True, "norm_init_scale": 0.005, "init_with_transpose": True,
              "encoder_layers": None, "code_normalization": "CROSSCODER"}
    if cfg.k is not None:
        state["k"], config["k"] = torch.tensor(cfg.k), cfg.k
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
