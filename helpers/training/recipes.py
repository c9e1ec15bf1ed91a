"""End-to-end recipes: a model pair -> token source -> buffer -> trained crosscoder, and the toy release.

These wire the pieces of ``data``, ``buffer``, ``crosscoder`` and ``training`` together the way the
tutorials use them; each piece can also be used on its own. ``python -m helpers.training.recipes toy-release``
rebuilds the packaged toy release.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import torch

from ..activations.buffer import ActivationSource, HarvestingSource, ShufflingBuffer, scale_factors_of
from ..activations.data import MixedTokenSource, ToyTokenSource, is_chat_row
from ..activations.hub_data import HFTokenSource
from ..activations.models import ModelPair, ModelPairError, check_same_tokenizer, load_model_pair, resolve_model_name
from ..crosscoder.checkpoints import save
from ..crosscoder.model import CrossCoder, CrossCoderConfig
from ..registry import get_release
from ..toy.corpus import paired_texts
from ..toy.narrow import NARROW_NAMES, narrow_pair_name
from ..validation import instance, positive_int, real
from .trainer import TrainConfig, Trainer

TOY_RELEASE_TRAINING = dict(num_tokens=1_228_800, batch_size=2048, lr=2e-3, l1_coeff=2.0, log_every=20)
_L1 = dict(d_hidden=2048, activation="relu", dec_init_norm=0.08, seed=0)
# Every toy release trains on the same tokens with the same schedule; only the crosscoder differs.
TOY_RELEASE_RECIPES: dict[str, tuple[dict, dict]] = {
    "toy-l3": (_L1, {}),
    # BatchTopK as in Minder et al.'s public crosscoders: k annealed from 10 k down to k over the first 10%; the
    # threshold's EMA decays at 0.99, not dictionary_learning's 0.999: over a run of 600 steps, 0.999 still gives the
    # cut-offs of the first steps (k near 200) 0.58 of its weight at the end, and the inference L0 came out at 46.9
    "toy-l3-batchtopk": (dict(_L1, activation="batchtopk", k=20, threshold_beta=0.99),
                         dict(l1_coeff=0.0, k_start=200, k_anneal_frac=0.1)),
    # JumpReLU with the losses of Anthropic's January 2025 update (tanh penalty, pre-activation loss; bandwidth 2.0,
    # c 4.0, initial threshold 0.1): lambda_s 2.0 gave L0 ~25 in 150-step trials (1.0: 36, 3.0: 19). The update's
    # pre-activation weight, 3e-6, left 71% of the latents silent on 8k tokens after 150 steps (the full run: 77% on
    # notebook 07's 50k, and no latent for the planted refusal, best AUROC 0.88); 3e-3 left 23% (3e-2: none, L0 37)
    "toy-l3-jumprelu": (dict(_L1, activation="jumprelu", pre_act_coeff=3e-3), {}),
    # the delta-crosscoder (Kassem et al. 2026): the BatchTopK recipe plus the loss on the models' difference, weighted
    # as the reconstruction (delta_coeff 1.0)
    "toy-l3-delta": (dict(_L1, activation="batchtopk", k=20, threshold_beta=0.99, delta_coeff=1.0),
                     dict(l1_coeff=0.0, k_start=200, k_anneal_frac=0.1)),
    # Anthropic's designated shared latents: 256 with tied decoders and 0.15 of the L1 penalty
    "toy-l3-designated": (dict(_L1, shared_latents=256, shared_sparsity_scale=0.15), {}),
    # a dedicated feature crosscoder: 128 latents that decode only into the base model, 128 only into the chat
    "toy-l3-dedicated": (dict(_L1, exclusive_latents=[128, 128]), {}),
}
# The toy organisms pair (notebook 08) gets the L1 and the BatchTopK recipe, the latter still with the peer's threshold
# decay (0.999; inference L0 46.9 at k 20): its rebuild with 0.99 waits for notebook 08 to be checked against it.
_BATCHTOPK_CONFIG, _BATCHTOPK_TRAINING = TOY_RELEASE_RECIPES["toy-l3-batchtopk"]
TOY_RELEASE_RECIPES |= {"toy-organisms-l3": TOY_RELEASE_RECIPES["toy-l3"],
                        "toy-organisms-l3-batchtopk": (dict(_BATCHTOPK_CONFIG, threshold_beta=0.999),
                                                       _BATCHTOPK_TRAINING),
                        "toy-organisms-l3-delta": TOY_RELEASE_RECIPES["toy-l3-delta"]}
# The narrow pairs (notebook 09): an L1 crosscoder of 1,024 latents at the middle layer on half the tokens, trained
# on the toy corpus (source and chat dialogues), never on a fine-tune's own data, as crosscoders are in practice.
TOY_RELEASE_RECIPES |= {f"{narrow_pair_name(name)}-l2": (dict(_L1, d_hidden=1024), dict(num_tokens=614_400))
                        for name in NARROW_NAMES}


class DataTokenizerError(ValueError):
    """A pre-tokenised dataset whose tokenizer is not the pair's (its token ids would mean other tokens)."""


def tokenizer_mismatch(pair: ModelPair, declared: str | None) -> str | None:
    """Why a dataset pre-tokenised with ``declared`` cannot feed ``pair`` (``None`` if it can): the tokenizer
    must be named, and be one of the pair's models or have the pair's vocabulary and encoding."""
    if not declared:
        return "the pre-tokenised dataset does not name the tokenizer that made it (add tokenizer: <model id>)"
    if declared in pair.names:
        return None
    from transformers import AutoTokenizer

    try:
        check_same_tokenizer([pair.tokenizer, AutoTokenizer.from_pretrained(resolve_model_name(declared))],
                             [pair.names[0], declared])
    except ModelPairError as error:
        return f"the pre-tokenised dataset was made with {declared}'s tokenizer: {error}"
    return None


def _hub_sources(data: dict) -> dict:
    """The hub data spec with its parts named: the flat ``{path, column, ...}`` form is ``tokenized`` when its
    column is ``input_ids`` and ``text`` otherwise."""
    if "path" in data:
        flat = {k: v for k, v in data.items() if k not in ("tokenized", "text", "chat", "chat_fraction")}
        return {("tokenized" if flat.get("column", "input_ids") == "input_ids" else "text"): flat}
    return {part: dict(data[part]) for part in ("tokenized", "text", "chat") if data.get(part)}


def token_source_for(pair: ModelPair, seq_len: int, seed: int = 0):
    """The token source a registered pair's profile names (``data`` in ``registry.yaml``).

    ``{kind: toy}``: the toy corpus (``dialogues: organisms`` for the toy organisms' dialogues).
    ``{kind: hub, ...}`` with any of ``tokenized: {path, column: input_ids,
    tokenizer}``, ``text: {path, column}``, ``chat: {path, column}`` and ``chat_fraction`` (default 0.5): the
    pre-tokenised dataset is used only when its tokenizer is the pair's (checked; ``DataTokenizerError``
    otherwise, unless text and chat datasets are given); else the text dataset and the chat dataset, rendered
    with the chat model's own chat template, are mixed ``1 - chat_fraction`` : ``chat_fraction`` as in the
    replication; a text (or chat) dataset alone is used as it is.
    """
    instance("pair", pair, ModelPair)
    positive_int("seq_len", seq_len, minimum=2)
    if pair.separate_tokenizers:
        raise ModelPairError(f"{pair.name} has separate tokenizers: one token stream cannot feed both models; pair "
                             "them on text with helpers.activations.alignment.AlignedHarvestingSource")
    if pair.profile is None:
        raise ValueError(f"{pair.name} is not a registered pair, so it names no data; build a token source "
                         "yourself (helpers.activations.hub_data.HFTokenSource) or register the pair with data=...")
    data = dict(pair.profile.data)
    kind = data.get("kind", "none")
    if kind == "toy":
        return ToyTokenSource(pair.tokenizer, seq_len=seq_len, seed=seed, dialogues=data.get("dialogues", "toy"))
    if kind != "hub":
        raise ValueError(f"pair {pair.name!r} names no usable data ({pair.profile.data}); give it data={{'kind': "
                         "'hub', 'text': {'path': ..., 'column': ...}, 'chat': {...}} or {'kind': 'toy'}")
    parts = _hub_sources(data)
    if "tokenized" in parts:
        spec = parts["tokenized"]
        why_not = tokenizer_mismatch(pair, spec.pop("tokenizer", None))
        if why_not is None:
            return HFTokenSource(tokenizer=pair.tokenizer, seq_len=seq_len, **spec)
        if not ("text" in parts or "chat" in parts):
            raise DataTokenizerError(f"pair {pair.name!r}: {why_not.rstrip('.')}. Give the pair text and chat "
                                     "datasets instead (data={'kind': 'hub', 'text': {...}, 'chat': {...}}): they are "
                                     "tokenised with its own tokenizer.")
        print(f"not using {spec['path']}: {why_not}; tokenising the pair's text and chat datasets instead")
    chat_tokenizer = getattr(pair.models[-1], "tokenizer", None)
    sources = {part: HFTokenSource(tokenizer=pair.tokenizer, seq_len=seq_len, chat_tokenizer=chat_tokenizer,
                                   **parts[part]) for part in ("text", "chat") if part in parts}
    if len(sources) == 2:
        return MixedTokenSource(sources["text"], sources["chat"], data.get("chat_fraction", 0.5))
    if sources:
        return next(iter(sources.values()))
    raise ValueError(f"pair {pair.name!r}: its hub data names no dataset ({pair.profile.data})")


def texts_for(pair: ModelPair, n_texts: int | None = None) -> list[str]:
    """The documents a registered pair with separate tokenizers reads (each model with its own tokenizer; see
    ``helpers.activations.alignment``): its profile's ``data``, as ``token_source_for`` reads it, untokenised.

    ``{kind: toy}``: the toy corpus's ``paired_texts`` (the first ``n_texts``, or all 3,348). ``{kind: hub, ...}``:
    the first ``n_texts`` (default 100,000) documents of its text and chat datasets, mixed ``1 - chat_fraction`` :
    ``chat_fraction`` (a conversation rendered with the chat model's template); a pre-tokenised dataset cannot serve.
    """
    instance("pair", pair, ModelPair)
    if n_texts is not None:
        positive_int("n_texts", n_texts)
    if not pair.separate_tokenizers:
        raise ModelPairError(f"{pair.name} shares one tokenizer: its models read one token stream, "
                             "token_source_for(pair, seq_len)")
    data = dict(pair.profile.data) if pair.profile is not None else {"kind": "none"}
    if data.get("kind") == "toy":
        return paired_texts()[:n_texts]
    parts = {part: spec for part, spec in (_hub_sources(data) if data.get("kind") == "hub" else {}).items()
             if part != "tokenized"}
    if not ("text" in parts or "chat" in parts):
        raise ValueError(f"pair {pair.name!r} names no text to read ({data}): a pair with separate tokenizers "
                         "needs data={'kind': 'hub', 'text': {'path': ..., 'column': ...}} (and/or 'chat'), or "
                         "{'kind': 'toy'}")
    n_texts = n_texts or 100_000
    both = len(parts) == 2
    fraction = real("chat_fraction", data.get("chat_fraction", 0.5), 0, 1) if both else float("chat" in parts)
    is_chat = [is_chat_row(row, fraction) for row in range(n_texts)]
    documents = {part: iter(HFTokenSource(tokenizer=pair.tokenizer_of(0), chat_tokenizer=pair.tokenizer_of(1),
                                          **parts[part]).documents(count))
                 for part, count in (("chat", sum(is_chat)), ("text", n_texts - sum(is_chat))) if count}
    return [text for flag in is_chat if (text := next(documents["chat" if flag else "text"], None)) is not None]


def make_buffer(pair: ModelPair, token_source, buffer_tokens: int, storage_dtype: str = "float32",
                model_batch_size: int = 32, seed: int = 0) -> ShufflingBuffer:
    """A shuffling buffer harvesting ``pair`` at its hook point from ``token_source``."""
    source = HarvestingSource(pair.models, token_source, pair.hook_point, model_batch_size=model_batch_size)
    return ShufflingBuffer(source, buffer_tokens=buffer_tokens, storage_dtype=storage_dtype, seed=seed)


def new_crosscoder(pair: ModelPair, buffer: ShufflingBuffer, scale_tokens: int | None = None,
                   **cfg_kwargs) -> CrossCoder:
    """A freshly initialised crosscoder for ``pair`` at the pair's hook point, whose scale factors are
    estimated on ``scale_tokens`` activations drawn from the buffer's source (so not used for training);
    by default 50,000, or the buffer's size where that is smaller (a quick run's small buffer: the smoke scale)."""
    instance("pair", pair, ModelPair)
    instance("buffer", buffer, ShufflingBuffer)
    if scale_tokens is None:
        scale_tokens = min(50_000, buffer.buffer_tokens)
    return crosscoder_for_site(list(pair.names), pair.hook_point, buffer.source, scale_tokens, **cfg_kwargs)


def crosscoder_for_site(model_names: list[str], hook_point: str, source: ActivationSource,
                        scale_tokens: int = 50_000, **cfg_kwargs) -> CrossCoder:
    """A fresh crosscoder for the models ``model_names`` at ``hook_point``, sized and normalised from
    ``scale_tokens`` activations ``[n, n_models, d_model]`` drawn from ``source`` (a harvest or a disk
    cache; no model needs to be loaded)."""
    if not isinstance(hook_point, str) or not hook_point:
        raise ValueError(f"hook_point must be a hook name such as 'blocks.14.hook_resid_pre', got {hook_point!r}")
    if not callable(getattr(source, "next_activations", None)):
        raise TypeError(f"source must serve next_activations(n) (a HarvestingSource or DiskCacheSource), "
                        f"got {type(source).__name__}")
    positive_int("scale_tokens", scale_tokens)
    acts = source.next_activations(scale_tokens)
    cfg = CrossCoderConfig(d_model=acts.shape[-1], n_models=acts.shape[1], hook_point=hook_point,
                           model_names=model_names, **cfg_kwargs)
    crosscoder = CrossCoder(cfg)
    crosscoder.set_normalization(scale_factors_of(acts))
    return crosscoder


def build_toy_release(name: str = "toy-l3", out_dir: str | Path | None = None, seq_len: int = 128) -> Path:
    """Train the toy release ``name`` (``TOY_RELEASE_RECIPES``: 2,048 latents at its registered hook point,
    1.2M tokens) into ``out_dir`` (default: the packaged asset folder)."""
    release = get_release(name)
    config, training = TOY_RELEASE_RECIPES[name]
    training = TOY_RELEASE_TRAINING | training
    torch.manual_seed(0)
    pair = load_model_pair(release.pair, hook_point=release.hook_point)
    buffer = make_buffer(pair, token_source_for(pair, seq_len), buffer_tokens=131_072)
    crosscoder = new_crosscoder(pair, buffer, **config)
    trainer = Trainer(crosscoder, buffer, TrainConfig(**training))
    history = trainer.train()
    final = history[-1]
    metrics = {key: round(final[key], 4) for key in ("l0", "explained_variance", "explained_variance_base",
                                                     "explained_variance_chat", "dead_fraction", "seconds")}
    return save(crosscoder, out_dir or release.asset_path,
                extra_cfg={"train_config": training, "final_metrics": metrics})


def activation_batches(pair: ModelPair, n_tokens: int, batch_size: int = 4096, seq_len: int = 128,
                       seed: int = 1) -> Iterator[torch.Tensor]:
    """``n_tokens`` raw activations of ``pair`` at its hook point in batches ``[batch, n_models, d_model]``.

    Drawn from the pair's token source with a different seed from training's (0), BOS dropped, in
    stream order (no shuffling: for statistics, not for training).
    """
    if n_tokens <= 0 or batch_size <= 0:
        raise ValueError(f"n_tokens and batch_size must be positive, got {n_tokens} and {batch_size}")
    source = HarvestingSource(pair.models, token_source_for(pair, seq_len, seed=seed), pair.hook_point)
    for start in range(0, n_tokens, batch_size):
        yield source.next_activations(min(batch_size, n_tokens - start))


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m helpers.training.recipes toy-release [--name NAME | --all] [--out DIR]`` rebuilds
    packaged toy releases (about 4 minutes each on 2 cores)."""
    parser = argparse.ArgumentParser(description="Rebuild packaged crosscoder releases.")
    parser.add_argument("what", choices=["toy-release"])
    parser.add_argument("--name", default="toy-l3", choices=sorted(TOY_RELEASE_RECIPES))
    parser.add_argument("--all", action="store_true", help="rebuild every toy release, one after the other")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's asset)")
    args = parser.parse_args(argv)
    for name in sorted(TOY_RELEASE_RECIPES) if args.all else [args.name]:
        print(f"wrote {build_toy_release(name, None if args.all else args.out)}")


if __name__ == "__main__":
    main()
