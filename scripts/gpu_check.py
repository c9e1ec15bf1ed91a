"""The device check at Gemma-2-2B's sizes with random weights (no download), or at tiny sizes on a CPU.

    python scripts/gpu_check.py [--cpu-smoke] [--out outputs/gpu_check] [--report docs/gpu.md]

Builds a base / IT pair of Gemma-2 models from google/gemma-2-2b's config (d_model 2,304, 26 layers, 256,000
tokens; ``--cpu-smoke``: the same architecture at d_model 64, 4 layers) with random weights, loads them through
``TransformerBridge.boot_transformers`` and measures, for each notebook's workload, the time against the
reference method of ``benchmarks/`` (the replication's way) and, on a GPU, the peak memory against
``helpers.training.gpu_plan``'s prediction:

- harvest to the middle layer (``blocks.14.hook_resid_pre``) vs every model run to the end with ``run_with_cache``;
- a relu training step at 16,384 and at 73,728 latents vs the replication's step (and the step's share in
  matrix products);
- CE / KL splicing on 1,024-token sequences vs the original tutorial's eight full passes per batch;
- latent statistics and Latent Scaling over harvested activations (timed; no reference method);
- greedy generation with the KV cache vs the full re-run at every token.

Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out`` (and the markdown to ``--report`` if given), with
the device's name. A prediction more than 10% off the measurement is flagged in the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ce_recovered import eight_pass_metrics  # noqa: E402
from harvest_throughput import replication_harvest  # noqa: E402
from train_step_throughput import ReplicationCrossCoder, make_step, matmul_fraction  # noqa: E402

from helpers.activations.models import ModelPair  # noqa: E402
from helpers.activations.runs import EditedRun  # noqa: E402
from helpers.activations.sites import harvest  # noqa: E402
from helpers.analysis.evals import splice_metrics  # noqa: E402
from helpers.analysis.norms import latent_statistics  # noqa: E402
from helpers.analysis.scaling import latent_scaling  # noqa: E402
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig  # noqa: E402
from helpers.training import gpu_plan  # noqa: E402

GEMMA_2_2B = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, vocab_size=256000)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, vocab_size=512)
SIZES = {
    "full": dict(config=GEMMA_2_2B, layer=14, seq_len=1024, model_batch=8, d_hidden=(16384, 73728), batch=4096,
                 steps=10, splice_batches=2, splice_rows=4, prompt_tokens=512, new_tokens=32, dtype=torch.bfloat16),
    "smoke": dict(config=TINY, layer=2, seq_len=64, model_batch=2, d_hidden=(256, 1024), batch=256, steps=3,
                  splice_batches=1, splice_rows=2, prompt_tokens=48, new_tokens=4, dtype=torch.float32),
}


def stand_in(folder: Path, role: str, config: dict, device: str, dtype: torch.dtype, seed: int):
    """A Gemma-2 model of ``config`` with random weights, through ``boot_transformers`` (its config written to
    ``folder`` so that nothing is fetched)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from helpers.builders.rehearsal_gemma import gemma_tokenizer

    hf_config = Gemma2Config(**config, sliding_window=4096, max_position_embeddings=8192,
                             final_logit_softcapping=30.0, attn_logit_softcapping=50.0, tie_word_embeddings=True,
                             hidden_activation="gelu_pytorch_tanh", pad_token_id=0, eos_token_id=1, bos_token_id=2)
    path = folder / role
    path.mkdir(parents=True, exist_ok=True)
    hf_config.save_pretrained(path)
    gemma_tokenizer().save_pretrained(path)
    torch.manual_seed(seed)
    with torch.device(device):
        hf_model = Gemma2ForCausalLM(hf_config).to(dtype).eval()
    bridge = TransformerBridge.boot_transformers(str(path), hf_model=hf_model, device=device, dtype=dtype)
    bridge.eval()
    for parameter in bridge.parameters():
        parameter.requires_grad_(False)
    return bridge


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measured(device: str, fn, repeats: int = 1, baseline_bytes: int | None = None):
    """``(seconds per call, peak GiB or None on a CPU, result)`` of ``fn()`` after one warm call. The peak is
    counted above ``baseline_bytes`` (default: what is allocated after the warm call)."""
    fn()
    sync(device)
    if device == "cuda":
        torch.cuda.empty_cache()
        start_bytes = torch.cuda.memory_allocated() if baseline_bytes is None else baseline_bytes
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    sync(device)
    seconds = (time.perf_counter() - started) / repeats
    peak = (torch.cuda.max_memory_allocated() - start_bytes) / gpu_plan.GIB if device == "cuda" else None
    return seconds, peak, result


def greedy_ids(run: EditedRun, tokens: torch.Tensor, new_tokens: int, use_cache: bool) -> torch.Tensor:
    """Greedy decoding on token ids ``[batch, seq]`` -> ``[batch, seq + new_tokens]``, with or without the cache."""
    logits, state = run.begin(tokens) if use_cache else (run(tokens), None)
    for step in range(new_tokens):
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True).to(tokens.device)], dim=1)
        if step + 1 < new_tokens:
            logits, state = run.extend(tokens[:, -1:], state) if use_cache else (run(tokens), None)
    return tokens


def check(size: str, device: str, partial: Path | None = None) -> dict:
    """Every workload at ``size`` on ``device``; each row is printed, and written to ``partial`` as it comes (so a
    run stopped by its time limit keeps the rows it finished)."""
    knobs = SIZES[size]
    cfg, layer, seq_len, model_batch = knobs["config"], knobs["layer"], knobs["seq_len"], knobs["model_batch"]
    hook = f"blocks.{layer}.hook_resid_pre"
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if partial is not None:
            partial.write_text(json.dumps(rows, indent=1))
    generator = torch.Generator().manual_seed(0)

    def tokens_of(batch: int, length: int) -> torch.Tensor:
        ids = torch.randint(3, cfg["vocab_size"], (batch, length), generator=generator)
        ids[:, 0] = 2  # BOS
        return ids.to(device)

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        models = [stand_in(Path(folder), role, cfg, device, knobs["dtype"], seed)
                  for seed, role in enumerate(("base", "chat"))]
        build_seconds = time.perf_counter() - started
    shapes = [gpu_plan.ModelShape.of(model) for model in models]
    measured_models = (torch.cuda.memory_allocated() / gpu_plan.GIB) if device == "cuda" else None
    record(dict(workload="both models loaded (bf16)" if device == "cuda" else "both models loaded",
                     seconds=build_seconds, peak_gib=measured_models,
                     predicted_gib=gpu_plan.models_bytes(shapes) / gpu_plan.GIB))
    pair = ModelPair(models=models, names=["gemma-2-2b stand-in", "gemma-2-2b-it stand-in"],
                     tokenizer=models[0].tokenizer, hook_point=hook)

    tokens = tokens_of(model_batch, seq_len)
    ours, peak, activations = measured(device, lambda: harvest(models, tokens, hook))
    reference, _, _ = measured(device, lambda: replication_harvest(models, tokens, hook))
    record(dict(workload=f"harvest to layer {layer}, {model_batch} x {seq_len} tokens", seconds=ours,
                     reference_seconds=reference, peak_gib=peak,
                     predicted_gib=gpu_plan.harvest_bytes(shapes[0], model_batch, seq_len) / gpu_plan.GIB))
    flat = activations[:, 1:].flatten(0, 1).float()  # [tokens, 2, d_model]

    d_model = cfg["hidden_size"]
    for d_hidden in knobs["d_hidden"]:
        batch = knobs["batch"]
        x = flat[torch.randint(0, flat.shape[0], (batch,), generator=generator).to(flat.device)]
        before = torch.cuda.memory_allocated() if device == "cuda" else None  # the plan counts weights and Adam too
        crosscoder = CrossCoder(CrossCoderConfig(d_model=d_model, d_hidden=d_hidden)).to(device).train()
        optimizer = torch.optim.Adam(crosscoder.parameters(), lr=5e-5)
        step = make_step(crosscoder, optimizer, lambda x, model=crosscoder: model.losses(x, l1_coeff=2.0).total)
        ours, peak, _ = measured(device, lambda step=step, x=x: step(x), knobs["steps"], before)
        share = matmul_fraction(step, x)
        del crosscoder, optimizer, step
        replication = ReplicationCrossCoder(d_model, d_hidden).to(device)
        ref_optimizer = torch.optim.Adam(replication.parameters(), lr=5e-5)
        ref_step = make_step(replication, ref_optimizer, lambda x, model=replication: sum(model.get_losses(x)[:2]))
        reference, _, _ = measured(device, lambda ref_step=ref_step, x=x: ref_step(x), knobs["steps"])
        del replication, ref_optimizer, ref_step
        predicted = (gpu_plan.crosscoder_bytes(2, d_model, d_hidden)
                     + gpu_plan.step_bytes(batch, 2, d_model, d_hidden)) / gpu_plan.GIB
        record(dict(workload=f"relu training step, {d_hidden:,} latents, batch {batch:,}", seconds=ours,
                         reference_seconds=reference, peak_gib=peak, predicted_gib=predicted, matmul_share=share))

    crosscoder = CrossCoder(CrossCoderConfig(d_model=d_model, d_hidden=knobs["d_hidden"][0], hook_point=hook))
    crosscoder = crosscoder.to(device).eval()
    rows_per_batch = knobs["splice_rows"]  # splice_metrics re-runs them one 1,024-token row at a time
    batches = [tokens_of(rows_per_batch, seq_len) for _ in range(knobs["splice_batches"])]
    ours, peak, _ = measured(device, lambda: splice_metrics(pair, crosscoder, batches, progress=False))
    reference, _, _ = measured(device, lambda: eight_pass_metrics(pair, crosscoder, batches))
    record(dict(workload=f"CE / KL splicing, {len(batches)} x {rows_per_batch} x {seq_len} tokens", seconds=ours,
                     reference_seconds=reference, peak_gib=peak,
                     predicted_gib=gpu_plan.splice_bytes(shapes, seq_len, rows_per_batch) / gpu_plan.GIB))

    chunks = list(flat.split(1024))
    ours, peak, _ = measured(device, lambda: latent_statistics(crosscoder, chunks))
    record(dict(workload=f"latent statistics, {flat.shape[0]:,} activations", seconds=ours, peak_gib=peak))
    ours, peak, _ = measured(device, lambda: latent_scaling(crosscoder, chunks, list(range(64)), progress=False))
    record(dict(workload=f"Latent Scaling, 64 latents, {flat.shape[0]:,} activations", seconds=ours,
                     peak_gib=peak))

    prompt = tokens_of(1, knobs["prompt_tokens"])
    run = EditedRun(models, 1)
    ours, peak, cached = measured(device, lambda: greedy_ids(run, prompt, knobs["new_tokens"], True))
    reference, _, full = measured(device, lambda: greedy_ids(run, prompt, knobs["new_tokens"], False))
    record(dict(workload=f"generation, {knobs['prompt_tokens']}-token prompt, {knobs['new_tokens']} new tokens",
                     seconds=ours, reference_seconds=reference, peak_gib=peak,
                     same_tokens=bool(torch.equal(cached, full))))

    for row in rows:
        if row.get("reference_seconds"):
            row["speedup"] = row["reference_seconds"] / row["seconds"]
        if row.get("peak_gib") is not None and row.get("predicted_gib"):
            row["prediction_error"] = row["predicted_gib"] / row["peak_gib"] - 1
    return dict(size=size, device=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                torch=torch.__version__, config=cfg, hook_point=hook, workloads=rows)


def markdown(result: dict) -> str:
    lines = [f"# Device check: {result['device']} ({result['size']} sizes)", "",
             f"Gemma-2 stand-ins with random weights ({result['config']['num_hidden_layers']} layers, d_model "
             f"{result['config']['hidden_size']:,}), `{result['hook_point']}`, torch {result['torch']}. Produced "
             "by `scripts/gpu_check.sh`; speed-ups are against the reference method of `benchmarks/`; a prediction "
             "is `helpers.training.gpu_plan`'s, flagged when more than 10% off the measured peak.", "",
             "| workload | seconds | reference s | speed-up | peak GiB | predicted GiB | note |",
             "|---|---|---|---|---|---|---|"]

    def number(value, form: str) -> str:
        return "" if value is None else format(value, form)

    for row in result["workloads"]:
        notes = []
        if "matmul_share" in row:
            notes.append(f"{row['matmul_share']:.0%} in matrix products")
        if "same_tokens" in row:
            notes.append("same tokens" if row["same_tokens"] else "TOKENS DIFFER")
        if "prediction_error" in row and abs(row["prediction_error"]) > 0.1:
            notes.append(f"prediction off by {row['prediction_error']:+.0%}")
        lines.append(f"| {row['workload']} | {number(row['seconds'], '.3f')} "
                     f"| {number(row.get('reference_seconds'), '.3f')} "
                     f"| {number(row.get('speedup'), '.2f')} | {number(row.get('peak_gib'), '.2f')} "
                     f"| {number(row.get('predicted_gib'), '.2f')} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check")
    parser.add_argument("--report", type=Path, help="also write the markdown report here (e.g. docs/gpu.md)")
    args = parser.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --cpu-smoke, or on a machine with a GPU")
    if args.report is not None and not args.report.parent.is_dir():  # checked before minutes of work, not after
        sys.exit(f"--report {args.report}: the folder {args.report.parent} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "gpu_check.partial.json"
    result = check("smoke" if args.cpu_smoke else "full", device, partial)
    partial.unlink()
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    report = markdown(result)
    (args.out / "gpu_check.md").write_text(report)
    if args.report:
        args.report.write_text(report)
    print(report)
    if not all(row.get("same_tokens", True) for row in result["workloads"]):
        sys.exit("cached generation gave other tokens than the full re-run")


if __name__ == "__main__":
    main()
