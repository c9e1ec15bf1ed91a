"""Every public function of ``helpers`` (``helpers.__all__``) and the command line, tried with bad arguments.

    python scripts/probe_bad_input.py [--markdown]

Each probe calls one entry point with one bad value (wrong type, shape, range, NaN, empty, a missing file, a
typo) and records what happened. A probe passes when the call raises one of the package's clear errors (a
``ValueError``, ``TypeError``, ``KeyError`` or ``FileNotFoundError`` subclass, raised at the entry point)
whose message matches what the probe expects to be named (the argument, the value, the file). Anything else
(an error from deep inside torch, an ``AttributeError``, ``IndexError``, or no error at all) fails, and the
script exits 1. ``tests/test_public_api_probes.py`` runs the same probes.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import helpers

ROOT = Path(__file__).resolve().parents[1]
CLEAR = (ValueError, TypeError, KeyError, FileNotFoundError)
RAW = (AttributeError, IndexError, ZeroDivisionError, AssertionError, NameError, UnboundLocalError)


@dataclass
class Probe:
    """``function``'s argument ``argument`` given ``bad`` (as written in the table); ``call`` makes the call;
    ``expect`` is a regex the error message must match."""

    function: str
    argument: str
    bad: str
    call: Callable[[], object]
    expect: str


class StubSource:
    """Stands in for an activation source where the probe must fail before any activation is drawn."""

    def next_activations(self, n: int) -> torch.Tensor:
        raise AssertionError("activations were drawn before the arguments were checked")


class StubBuffer:
    """Stands in for a ShufflingBuffer where the probe must fail before any batch is drawn."""

    def next_batch(self, n: int) -> torch.Tensor:
        raise AssertionError("a batch was drawn before the arguments were checked")


@dataclass
class Outcome:
    probe: Probe
    passed: bool
    result: str


def run(probe: Probe) -> Outcome:
    try:
        probe.call()
    except RAW as error:
        return Outcome(probe, False, f"raw {type(error).__name__}: {error}")
    except CLEAR as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        raised_inside = "site-packages/torch" in "".join(traceback.format_tb(error.__traceback__)[-1:])
        passed = bool(re.search(probe.expect, message, re.DOTALL)) and not raised_inside
        return Outcome(probe, passed, f"{type(error).__name__}: {message}")
    except SystemExit as error:
        return Outcome(probe, bool(re.search(probe.expect, str(error))), f"SystemExit: {error}")
    except Exception as error:  # noqa: BLE001 - every other failure is a finding
        return Outcome(probe, False, f"raw {type(error).__name__}: {error}")
    return Outcome(probe, False, "accepted without an error")


def command_line(*args: str) -> Callable[[], None]:
    """A call of ``python -m helpers.training.launch ARGS`` that raises ``SystemExit`` with its stderr on failure."""
    def call() -> None:
        done = subprocess.run([sys.executable, "-m", "helpers.training.launch", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        if done.returncode:
            raise SystemExit(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "exit status")
    return call


def probes(workdir: Path) -> list[Probe]:
    """The probes, on the toy pair and its release (loaded once)."""
    from helpers import (
        CrossCoder,
        CrossCoderConfig,
        Thresholds,
        TrainConfig,
        from_pretrained,
        load_model_pair,
    )
    from helpers.activations.alignment import (
        AlignedHarvestingSource,
        aligned_positions,
        alignment_report,
        harvest_aligned_texts,
        last_token_pairs,
        token_end_offsets,
    )
    from helpers.activations.hub_data import HFTokenSource
    from helpers.activations.sites import chunked_kl_divergence, splice_rows_per_pass
    from helpers.analysis.norms import LatentStatistics
    from helpers.crosscoder.jumprelu import jump_relu, jumprelu_penalties
    from helpers.crosscoder.relu_step import relu_step
    from helpers.methods.diff_sae import narrow_diff_sae_path
    from helpers.methods.difference_lens import document_starts
    from helpers.methods.difference_pca import difference_pca
    from helpers.methods.logit_mining import logit_diff_mining
    from helpers.methods.patchscope import patchscope
    from helpers.methods.reading import read_dictionaries, read_fine_tune, reading_board
    from helpers.toy.corpus import read_source, source_files
    from helpers.toy.narrow import get_narrow_organism, narrow_pair_name
    from helpers.training.recipes import texts_for

    pair = load_model_pair("toy")
    release = from_pretrained("toy-l3")
    separate = load_model_pair("toy-vs-llama")
    separate_release = from_pretrained("toy-vs-llama-dfc")
    texts_file = workdir / "texts.jsonl"
    texts_file.write_text('{"text": "one"}\n')
    tokens = torch.full((2, 8), 5)
    x = torch.randn(8, 2, 128)
    nan = math.nan
    small = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=16))
    missing = workdir / "no-such-folder"
    source = helpers.token_source_for(pair, 16)  # tokenising the toy corpus takes seconds: once
    buffer = StubBuffer()
    return [
        # the crosscoder and its files
        Probe("CrossCoderConfig", "d_hidden", "0", lambda: CrossCoderConfig(d_model=8, d_hidden=0), "d_hidden"),
        Probe("CrossCoderConfig", "activation", "'batchtop'", lambda: CrossCoderConfig(8, 16, activation="batchtop"),
              "activation must be one of"),
        Probe("CrossCoderConfig", "k", "32 > d_hidden", lambda: CrossCoderConfig(8, 16, activation="topk", k=32), "k"),
        Probe("CrossCoderConfig", "dec_init_norm", "NaN", lambda: CrossCoderConfig(8, 16, dec_init_norm=nan),
              "dec_init_norm"),
        Probe("CrossCoderConfig.from_dict", "key", "'activaton'",
              lambda: CrossCoderConfig.from_dict({"d_model": 8, "d_hidden": 16, "activaton": "topk"}),
              "did you mean 'activation'"),
        Probe("CrossCoder", "cfg", "a dict", lambda: CrossCoder({"d_model": 8}), "CrossCoderConfig"),
        Probe("CrossCoder.losses", "x", "[8, 1, 8]", lambda: small.losses(torch.randn(8, 1, 8)),
              r"shape \[batch, 2, 8\]"),
        Probe("CrossCoderConfig", "jumprelu_bandwidth", "0", lambda: CrossCoderConfig(
            8, 16, activation="jumprelu", jumprelu_bandwidth=0.0), "jumprelu_bandwidth"),
        Probe("CrossCoderConfig", "k", "8 for jumprelu", lambda: CrossCoderConfig(8, 16, activation="jumprelu", k=8),
              "takes no k"),
        Probe("CrossCoderConfig", "delta_coeff", "NaN", lambda: CrossCoderConfig(8, 16, delta_coeff=nan),
              "delta_coeff"),
        Probe("jump_relu", "threshold", "[15] for 16 latents",
              lambda: jump_relu(torch.randn(4, 16), torch.rand(15), 2.0), "threshold"),
        Probe("jumprelu_penalties", "tanh_scale", "-1", lambda: jumprelu_penalties(
            torch.rand(4, 16), torch.rand(4, 16), torch.rand(16), torch.rand(16), -1.0), "tanh_scale"),
        Probe("aligned_positions", "ends_a", "[1, 3, 2]", lambda: aligned_positions([1, 3, 2], [1, 2, 3]),
              "non-decreasing"),
        Probe("token_end_offsets", "text", "a list", lambda: token_end_offsets(pair.tokenizer, ["a"]), "string"),
        Probe("AlignedHarvestingSource", "hook_points", "one for two models", lambda: AlignedHarvestingSource(
            pair.models, [pair.tokenizer] * 2, ["text"], ["blocks.1.hook_resid_post"]), "one entry per model"),
        Probe("AlignedHarvestingSource", "min_yield", "1.5", lambda: AlignedHarvestingSource(
            pair.models, [pair.tokenizer] * 2, ["text"], ["blocks.1.hook_resid_post"] * 2, min_yield=1.5), "min_yield"),
        Probe("register_pair", "tokenizers", "'seperate'", lambda: helpers.register_pair(
            "probe-typo", "a", "b", hook_point="blocks.1.hook_resid_post", tokenizers="seperate"),
              "did you mean 'separate'"),
        Probe("load_model_pair", "tokenizers", "'both'", lambda: load_model_pair(
            "toy", tokenizers="both"), "tokenizers must be one of"),
        Probe("last_token_pairs", "texts", "empty", lambda: last_token_pairs(
            pair.models, [pair.tokenizer] * 2, [], ["blocks.1.hook_resid_post"] * 2), "texts must not be empty"),
        Probe("alignment_report", "tokenizers", "one", lambda: alignment_report([pair.tokenizer], ["text"]),
              "two tokenizers"),
        Probe("ModelPair.tokenizer_of", "index", "2", lambda: pair.tokenizer_of(2), "index must be a model index"),
        Probe("training_record", "release", "'toy-l4'", lambda: helpers.training_record("toy-l4"), "toy-l3"),
        Probe("relu_step", "decoder", "[16, 8, 2]", lambda: relu_step(
            torch.randn(4, 2, 8), torch.randn(2, 8, 16), torch.randn(16), torch.randn(16, 8, 2), torch.randn(2, 8),
            torch.rand(16)), r"decoder must have shape \[16, 2, 8\]"),
        Probe("CrossCoder.losses", "x", "one token", lambda: small.losses(torch.randn(1, 2, 8)), "2 activations"),
        Probe("CrossCoder.losses", "k", "-1", lambda: small.losses(torch.randn(4, 2, 8), k=-1), "k must be"),
        Probe("CrossCoder.encode", "x", "integer tensor", lambda: small.encode(torch.ones(4, 2, 8, dtype=torch.long)),
              "floating-point"),
        Probe("save", "crosscoder", "a dict", lambda: helpers.save({}, workdir / "s"), "needs a CrossCoder"),
        Probe("save", "extra_cfg", "{'loss': NaN}", lambda: helpers.save(small, workdir / "s", {"loss": nan}),
              "plain JSON"),
        Probe("load", "path", "missing folder", lambda: helpers.load(missing), "no such folder"),
        Probe("load", "format", "'nativ'", lambda: helpers.load(missing, format="nativ"), "format must be one of"),
        Probe("from_pretrained", "name_or_path", "'toy-l33'", lambda: from_pretrained("toy-l33"),
              r"unknown crosscoder release 'toy-l33'.*Did you mean"),
        Probe("from_pretrained", "name_or_path", "'./runs/typo'", lambda: from_pretrained("./runs/typo"),
              "no such folder"),
        Probe("from_pretrained", "name_or_path", "3", lambda: from_pretrained(3), "release name"),
        Probe("load_release", "release", "'gemma-2-2b-l14'", lambda: helpers.load_release("gemma-2-2b-l14"),
              "Did you mean"),
        Probe("release_folder", "release", "3", lambda: helpers.release_folder(3), "Release or a release's name"),
        Probe("push_to_hub", "crosscoder", "None", lambda: helpers.push_to_hub(None, "me/x"), "CrossCoder"),
        # registry, pairs, diff
        Probe("get_pair", "name", "'ty'", lambda: helpers.get_pair("ty"), "unknown model pair 'ty'"),
        Probe("get_release", "name", "''", lambda: helpers.get_release(""), "unknown crosscoder release"),
        Probe("register_pair", "settings", "{'d_hidden': 'big'}",
              lambda: helpers.register_pair("p1", "a", "b", hook_point="blocks.1.hook_resid_pre",
                                            settings={"d_hidden": "big"}), "d_hidden: 'big'"),
        Probe("register_pair", "like", "'tyo'", lambda: helpers.register_pair(
            "p2", "a", "b", hook_point="blocks.1.hook_resid_pre", like="tyo"), "unknown model pair 'tyo'"),
        Probe("register_release", "release_", "a dict", lambda: helpers.register_release({"name": "r"}),
              "needs a Release"),
        Probe("Release", "format", "'safetensors'", lambda: helpers.Release("r", "toy", "blocks.1.hook_resid_pre",
                                                                          "safetensors", asset="x"), "format must be"),
        Probe("load_model_pair", "a", "'toy:bsae'", lambda: load_model_pair("toy:bsae", "toy:chat"), "toy:bsae"),
        Probe("load_model_pair", "hook_point", "'blocks.3.hook_resid_pots'",
              lambda: load_model_pair("toy", hook_point="blocks.3.hook_resid_pots"), "close matches"),
        Probe("load_diff", "what", "'toy-l3-batchtop'", lambda: helpers.load_diff("toy-l3-batchtop"),
              "unknown model pair 'toy-l3-batchtop'"),
        Probe("check_compatible", "crosscoder", "another width", lambda: helpers.check_compatible(small, pair),
              "hook point|width"),
        Probe("check_compatible", "pair", "a name", lambda: helpers.check_compatible(release, "toy"), "ModelPair"),
        # data and training
        Probe("token_source_for", "seq_len", "0", lambda: helpers.token_source_for(pair, 0), "seq_len"),
        Probe("token_source_for", "pair", "a name", lambda: helpers.token_source_for("toy", 16), "ModelPair"),
        Probe("activation_batches", "n_tokens", "-5", lambda: next(helpers.activation_batches(pair, -5)), "n_tokens"),
        Probe("make_buffer", "buffer_tokens", "0",
              lambda: helpers.make_buffer(pair, source, 0), "buffer_tokens"),
        Probe("make_buffer", "storage_dtype", "'float33'",
              lambda: helpers.make_buffer(pair, source, 64, "float33"), "float33"),
        Probe("TokenShard", "rank", "2 of 2", lambda: helpers.TokenShard(source, 2, 2),
              "rank"),
        Probe("TrainConfig", "lr", "NaN", lambda: TrainConfig(lr=nan), "lr must be a finite number"),
        Probe("TrainConfig", "num_tokens", "< batch_size", lambda: TrainConfig(num_tokens=10, batch_size=64),
              "num_tokens"),
        Probe("TrainConfig", "checkpoint_dir", "''", lambda: TrainConfig(checkpoint_dir=""), "checkpoint_dir"),
        Probe("Trainer", "cfg", "k_start > d_hidden", lambda: helpers.Trainer(
            CrossCoder(CrossCoderConfig(8, 16, activation="topk", k=4)), buffer,
            TrainConfig(num_tokens=64, batch_size=32, k_start=64)),
              "k_start"),
        Probe("Trainer", "buffer", "a list", lambda: helpers.Trainer(small, [], TrainConfig()), "next_batch"),
        Probe("Trainer.train", "steps", "0", lambda: helpers.Trainer(
            small, buffer, TrainConfig(num_tokens=64, batch_size=32)).train(0), "steps"),
        Probe("LiveTrainingView", "total_steps", "0", lambda: helpers.LiveTrainingView(0), "total_steps"),
        Probe("plan_for_pair", "settings", "{}", lambda: helpers.plan_for_pair(pair, {}), "settings"),
        Probe("harvest", "tokens", "float tensor", lambda: helpers.harvest(pair.models, tokens.float(),
                                                                          pair.hook_point), "integer tensor"),
        Probe("harvest", "hook_point", "'blocks.9.hook_resid_pre'",
              lambda: helpers.harvest(pair.models, tokens, "blocks.9.hook_resid_pre"), "blocks.9"),
        Probe("harvest", "hook_point", "'blocks.3.hook_resid_pots'",
              lambda: helpers.harvest(pair.models, tokens, "blocks.3.hook_resid_pots"), "hook_resid_pots"),
        Probe("new_crosscoder", "buffer", "a list", lambda: helpers.new_crosscoder(pair, [], d_hidden=16),
              "buffer must be a ShufflingBuffer"),
        Probe("crosscoder_for_site", "scale_tokens", "0", lambda: helpers.crosscoder_for_site(
            list(pair.names), pair.hook_point, StubSource(), scale_tokens=0, d_hidden=16), "scale_tokens"),
        Probe("crosscoder_for_site", "hook_point", "''",
              lambda: helpers.crosscoder_for_site(["a", "b"], "", None, d_hidden=16), "hook_point"),
        # analysis
        Probe("relative_norms", "model_b", "2 of 2 models", lambda: helpers.relative_norms(release, 0, 2), "model_b"),
        Probe("relative_norms", "crosscoder", "a name", lambda: helpers.relative_norms("toy-l3"), "CrossCoder"),
        Probe("delta_norms", "model_a", "-1", lambda: helpers.delta_norms(release, -1), "model_a"),
        Probe("latent_statistics", "activation_batches", "[8, 2, 64]",
              lambda: helpers.latent_statistics(release, [torch.randn(8, 2, 64)]), r"shape \[batch, 2, 128\]"),
        Probe("latent_statistics", "activation_batches", "none", lambda: helpers.latent_statistics(release, []),
              "no activation"),
        Probe("latent_table", "statistics", "a dict", lambda: helpers.latent_table(release, {"frequency": 1}),
              "LatentStatistics"),
        Probe("latent_table", "statistics", "another crosscoder's", lambda: helpers.latent_table(
            release, LatentStatistics(*(torch.zeros(16) for _ in range(3)), 0)), "16"),
        Probe("Thresholds", "chat_only", "0.3 < shared", lambda: Thresholds(chat_only=0.3), "thresholds must"),
        Probe("taxonomy_counts", "table", "a list", lambda: helpers.taxonomy_counts([1, 2]), "latent_table"),
        Probe("latent_scaling", "latents", "[4096]", lambda: helpers.latent_scaling(release, [x], [4096]),
              r"latent ids must lie in \[0, 2048\)"),
        Probe("latent_scaling", "vector_model", "3", lambda: helpers.latent_scaling(release, [x], [1], vector_model=3),
              "vector_model"),
        Probe("scaling_flags", "nu_err_max", "NaN", lambda: helpers.scaling_flags(
            helpers.latent_scaling(release, [x], [1], progress=False), nu_err_max=nan), "nu_err_max"),
        Probe("auroc", "labels", "all True", lambda: helpers.auroc(torch.rand(4, 2), [True] * 4), "both"),
        Probe("auroc", "scores", "3 rows for 4 labels", lambda: helpers.auroc(torch.rand(3, 2), [True, False] * 2),
              "3|4"),
        Probe("behaviour_detectors", "labels", "length 1 for 2 prompts", lambda: helpers.behaviour_detectors(
            pair, release, ["User: a?\nAssistant:", "User: b?\nAssistant:"], [True]), "labels"),
        Probe("planted_detectors", "n_other", "-1", lambda: helpers.planted_detectors(pair, release, n_other=-1),
              "n_other"),
        Probe("top_activations", "latents", "[]", lambda: helpers.top_activations(pair, release, [tokens], []),
              "at least one latent"),
        Probe("top_activations", "n_top", "0", lambda: helpers.top_activations(pair, release, [tokens], [1], n_top=0),
              "n_top"),
        Probe("template_share", "top", "a tensor", lambda: helpers.template_share(torch.ones(3), pair.tokenizer),
              "TopActivations"),
        Probe("template_mask", "tokens", "1-D", lambda: helpers.template_mask(torch.tensor([1, 2]), pair.tokenizer),
              r"\[batch, seq\]"),
        Probe("response_activations", "prompts", "[]", lambda: helpers.response_activations(pair, release, []),
              "prompts"),
        Probe("reconstruction_metrics", "dense_frequency", "1.5",
              lambda: helpers.reconstruction_metrics(release, [x], dense_frequency=1.5), "dense_frequency"),
        Probe("splice_metrics", "token_batches", "[]", lambda: helpers.splice_metrics(pair, release, [],
                                                                                      progress=False), "no tokens|no"),
        Probe("latent_ablation_effects", "latents", "[-1]", lambda: helpers.latent_ablation_effects(
            pair, release, [tokens], [-1], progress=False), "latent ids must lie"),
        Probe("ablated_logits_fn", "mode", "'zero'", lambda: helpers.ablated_logits_fn(pair, release, [1], mode="zero"),
              "mode"),
        Probe("ablated_logits_fn", "model_index", "2", lambda: helpers.ablated_logits_fn(pair, release, [1], 2),
              "model_index"),
        Probe("spliced_logits_fn", "model_index", "-1", lambda: helpers.spliced_logits_fn(pair, release, -1),
              "model_index"),
        Probe("EditedRun", "target", "2", lambda: helpers.EditedRun(pair.models, 2), "target"),
        Probe("EditedRun", "edit", "'add'", lambda: helpers.EditedRun(pair.models, 0, pair.hook_point, "add"),
              "edit must be a function"),
        Probe("EditedRun.extend", "state", "None", lambda: helpers.EditedRun(pair.models, 0).extend(
            torch.tensor([[5]]), None), "RunState"),
        Probe("greedy_continuations", "use_cache", "'yes'", lambda: helpers.greedy_continuations(
            helpers.EditedRun(pair.models, 0), pair.tokenizer, ["User: a?"], 2, use_cache="yes"), "use_cache"),
        Probe("greedy_continuations", "prompts", "[]", lambda: helpers.greedy_continuations(
            helpers.EditedRun(pair.models, 0), pair.tokenizer, []), "prompts"),
        Probe("causal_summary", "classes", "a list", lambda: helpers.causal_summary(None, [1]), "effects|classes"),
        Probe("compare_crosscoders", "crosscoders", "{}", lambda: helpers.compare_crosscoders(pair, {}),
              "crosscoders"),
        Probe("replication_table", "metrics", "None", lambda: helpers.replication_table(None, None), "metrics"),
        Probe("latent_direction", "latent", "2048", lambda: helpers.latent_direction(release, 2048),
              r"\[0, 2048\)"),
        Probe("steered_logits_fn", "strength", "NaN", lambda: helpers.steered_logits_fn(pair, release, 591, nan),
              "strength must be a finite number"),
        Probe("steered_logits_fn", "where", "'everywhere'",
              lambda: helpers.steered_logits_fn(pair, release, 591, 1.0, where="everywhere"), "where must be"),
        Probe("vector_logits_fn", "vector", "[64]", lambda: helpers.vector_logits_fn(
            pair, torch.ones(64), 1.0, pair.hook_point), r"\[d_model=128\]"),
        Probe("vector_logits_fn", "tokens (per call)", "1,025 tokens", lambda: helpers.vector_logits_fn(
            pair, torch.ones(128), 1.0, pair.hook_point)(torch.full((1, 1025), 5)), "context of 1024"),
        Probe("steering_curve", "strengths", "[]", lambda: helpers.steering_curve(pair, release, 591, [], []),
              "strengths and questions"),
        # other diffing methods and the toy behaviour
        Probe("token_kl", "token_batches", "[]", lambda: helpers.token_kl(pair, [], progress=False), "no tokens"),
        Probe("token_kl", "token_batches", "ids beyond the vocabulary",
              lambda: helpers.token_kl(pair, [torch.tensor([[1, 4096]])], progress=False), "vocabulary"),
        Probe("prompt_kl", "prompts", "[]", lambda: helpers.prompt_kl(pair, []), "prompts"),
        Probe("activation_difference_lens", "n_positions", "0",
              lambda: helpers.activation_difference_lens(pair, [tokens], n_positions=0), "n_positions"),
        Probe("DifferenceSource", "paired", "a list", lambda: helpers.DifferenceSource([1]), "next_activations"),
        Probe("new_diff_sae", "k", "0", lambda: helpers.new_diff_sae(["a", "b"], pair.hook_point, None, 16, k=0),
              "k"),
        Probe("evaluation_questions", "split", "'test'", lambda: helpers.evaluation_questions("test"), "split"),
        Probe("evaluation_questions", "n_other", "-1", lambda: helpers.evaluation_questions(n_other=-1), "n_other"),
        Probe("organism_rates", "prompts", "[]", lambda: helpers.organism_rates(lambda t: t, pair.tokenizer, []),
              "prompts"),
        Probe("organism_rates_of", "continuations", "one too few", lambda: helpers.organism_rates_of(
            [], helpers.evaluation_questions(n_other=1)[:1]), "one continuation per prompt"),
        Probe("refusal_table", "questions", "[]", lambda: helpers.refusal_table(pair, []), "prompts must not be empty"),
        Probe("compare_refusals", "runs", "{}", lambda: helpers.compare_refusals({}, pair.tokenizer, []), "runs"),
        Probe("side_by_side", "max_new_tokens", "0", lambda: helpers.side_by_side(pair, ["User: a?"], 0),
              "max_new_tokens"),
        Probe("probe_auroc_by_site", "fit_labels", "one class", lambda: helpers.probe_auroc_by_site(
            pair, ["User: a?"] * 2, [True, True], ["User: b?"] * 2, [True, False], [pair.hook_point]), "both"),
        # readers of narrow fine-tunes
        Probe("patchscope", "vectors", "[2, 64]", lambda: patchscope(
            pair.models[1], pair.tokenizer, torch.ones(2, 64), "blocks.2.hook_resid_post"), "d_model=128"),
        Probe("logit_diff_mining", "top_k", "0", lambda: logit_diff_mining(pair, [tokens], top_k=0), "top_k"),
        Probe("difference_pca", "n_components", "500", lambda: difference_pca(pair, [tokens], n_components=500),
              "n_components"),
        Probe("document_starts", "texts", "[None]", lambda: document_starts(pair.tokenizer, [None]), "entry 0"),
        Probe("read_fine_tune", "documents", "[]", lambda: read_fine_tune(pair, [], ["User: a?"]), "documents"),
        Probe("reading_board", "readings", "{}", lambda: reading_board({}, pair.tokenizer, {}), "same organisms"),
        Probe("get_narrow_organism", "name", "'tabo'", lambda: get_narrow_organism("tabo"), "'taboo'"),
        Probe("narrow_pair_name", "name", "'sdf-mixed'", lambda: narrow_pair_name("sdf-mixed"), "'sdf-mixed'"),
        Probe("narrow_diff_sae_path", "organism", "'tabo'", lambda: narrow_diff_sae_path("tabo"), "'tabo'"),
        Probe("read_dictionaries", "diff_sae", "a two-model crosscoder", lambda: read_dictionaries(
            pair, release, release, ["text"]), "diff_sae must read 1 model"),
        Probe("read_dictionaries", "scan_limit", "0", lambda: read_dictionaries(
            pair, release, release, ["text"], scan_limit=0), "scan_limit"),
        # the frozen toy corpus and the splice's memory
        Probe("read_source", "path", "'jsn/decoder.py'", lambda: read_source("jsn/decoder.py"), "jsn/decoder.py"),
        Probe("source_files", "split", "'test'", lambda: source_files("test"), "'test'"),
        Probe("splice_rows_per_pass", "seq_len", "0", lambda: splice_rows_per_pass(0, 256_000, 2), "seq_len"),
        Probe("chunked_kl_divergence", "other_logits", "[2, 3, 9]", lambda: chunked_kl_divergence(
            torch.zeros(2, 3, 8), torch.zeros(2, 3, 9)), r"\[2, 3, 8\]"),
        Probe("load_model_pair", "name", "'toy:narrow/sfd'", lambda: load_model_pair(
            "toy:base", "toy:narrow/sfd", hook_point="blocks.1.hook_resid_post"), "no narrow organism 'sfd'"),
        # dashboards
        Probe("gather_dashboards", "latents", "[5000]",
              lambda: helpers.gather_dashboards(pair, release, [tokens], [5000]), r"\[0, 2048\)"),
        Probe("save_html", "dashboards", "[]", lambda: helpers.save_html([], workdir / "d.html"), "dashboards"),
        Probe("gather_aligned_dashboards", "pair", "one tokenizer", lambda: helpers.gather_aligned_dashboards(
            pair, release, ["text"], [1]), "shares one tokenizer: use gather_dashboards"),
        Probe("gather_aligned_dashboards", "texts", "['a', '']", lambda: helpers.gather_aligned_dashboards(
            separate, separate_release, ["a", ""], [1]), "entry 1"),
        Probe("gather_aligned_dashboards", "max_chars", "0", lambda: helpers.gather_aligned_dashboards(
            separate, separate_release, ["a"], [1], max_chars=0), "max_chars"),
        Probe("gather_dashboards", "pair", "separate tokenizers", lambda: helpers.gather_dashboards(
            separate, separate_release, [tokens], [1]), "gather_aligned_dashboards"),
        Probe("harvest_aligned_texts", "texts", "a string", lambda: harvest_aligned_texts(
            separate.models, separate.tokenizers, "text", [separate.hook_point] * 2), "texts must be a list"),
        Probe("texts_for", "n_texts", "0", lambda: texts_for(separate, 0), "n_texts"),
        Probe("texts_for", "pair", "one tokenizer", lambda: texts_for(pair, 5), "shares one tokenizer"),
        Probe("HFTokenSource.documents", "n", "-1", lambda: HFTokenSource(
            "json", pair.tokenizer, 8, column="text", data_files=str(texts_file)).documents(-1), "n must be"),
        # the command line
        Probe("launch train", "--pair", "'tyo'", command_line("train", "--pair", "tyo", "--out", str(workdir / "r")),
              "unknown model pair 'tyo'"),
        Probe("launch train", "--num-tokens", "-5", command_line(
            "train", "--pair", "toy", "--out", str(workdir / "r"), "--num-tokens", "-5"),
              "num-tokens must be positive"),
        Probe("launch train", "--resume", "empty folder", command_line(
            "train", "--pair", "toy", "--out", str(missing), "--resume"), "no checkpoint"),
        Probe("launch train", "--cache", "missing folder", command_line(
            "train", "--pair", "toy", "--out", str(workdir / "r"), "--cache", str(missing)), "no metadata.json|not"),
        Probe("launch cache", "--tokens", "0", command_line("cache", "--pair", "toy", "--tokens", "0", "--out",
                                                            str(workdir / "c")), "tokens must be positive"),
        Probe("launch cache", "--texts", "0", command_line("cache", "--pair", "toy-vs-llama", "--tokens", "10",
                                                           "--texts", "0", "--out", str(workdir / "c")),
              "texts must be positive"),
    ]


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = [run(probe) for probe in probes(Path(tmp))]
    for outcome in outcomes:
        p = outcome.probe
        result = re.sub(r"\s+", " ", outcome.result)[:110].replace("|", "\\|")
        mark = "clear" if outcome.passed else "**NOT CLEAR**"
        if args.markdown:
            print(f"| `{p.function}` | `{p.argument}` | {p.bad} | {mark}: {result} |")
        else:
            print(f"{mark:14} {p.function}({p.argument}={p.bad}): {result}")
    failed = [o for o in outcomes if not o.passed]
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
