"""The GPU memory plan: exact where it can be (weights, optimiser), sensible choices where it estimates."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers.crosscoder.model import CrossCoder, CrossCoderConfig
from helpers.registry import get_pair
from helpers.training.gpu_plan import (
    GIB,
    KNOWN_GPUS,
    ModelShape,
    crosscoder_bytes,
    inference_gib,
    plan_for_pair,
    plan_memory,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

GEMMA_2_2B = ModelShape(n_params=2_614_341_888, d_model=2304, d_mlp=9216, n_heads=8, d_vocab=256_000,
                        bytes_per_value=2)


def test_crosscoder_memory_is_weights_gradients_and_adam_exactly():
    crosscoder = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=64, seed=0))
    optimizer = torch.optim.Adam(crosscoder.parameters())
    crosscoder.losses(torch.randn(32, 2, 16), l1_coeff=1.0).total.backward()
    optimizer.step()
    tensors = [*crosscoder.parameters(), *(p.grad for p in crosscoder.parameters())]
    tensors += [v for state in optimizer.state.values() for k, v in state.items() if k != "step"]
    assert sum(t.numel() * t.element_size() for t in tensors) == crosscoder_bytes(2, 16, 64)


def test_model_shape_counts_every_parameter(toy_pair):
    model = toy_pair.models[0]
    shape = ModelShape.of(model)
    assert shape.n_params == sum(p.numel() for p in model.parameters()) and shape.bytes_per_value == 4
    assert (shape.d_model, shape.d_mlp) == (128, 512)


def test_gemma_plans_fit_where_they_should_and_shrink_batches_to_fit():
    plans = {gpu: plan_memory([GEMMA_2_2B, GEMMA_2_2B], d_hidden=16_384, seq_len=1024, batch_size=4096,
                              model_batch=32, buffer_tokens=1_000_000, gpu_gib=gib) for gpu, gib in KNOWN_GPUS.items()}
    t4, h100 = plans["T4 16 GB (Colab)"], plans["H100 80 GB"]
    assert t4.models_gib == 2 * 2_614_341_888 * 2 / GIB  # both models in bfloat16: 9.74 GiB
    assert t4.fits and t4.total_gib <= t4.gpu_gib
    assert h100.fits and h100.model_batch == 32 and h100.batch_size == 4096
    assert t4.model_batch < h100.model_batch, "a T4 has room for fewer sequences per forward pass"
    assert t4.buffer_cpu_gib == 1_000_000 * 2 * 2304 * 4 / GIB
    too_small = plan_memory([GEMMA_2_2B, GEMMA_2_2B], 16_384, 1024, 4096, 32, 1_000_000, gpu_gib=8.0)
    assert not too_small.fits, "two 2.6B-parameter models do not fit in 8 GiB"


def test_plan_for_a_loaded_pair_has_a_row_per_gpu(toy_pair):
    settings = {"d_hidden": 1024, "seq_len": 128, "batch_size": 2048, "model_batch": 16, "buffer_tokens": 65536}
    table = plan_for_pair(toy_pair, settings)
    assert set(KNOWN_GPUS) <= set(table.index) and table["fits"].all()
    assert (table["batch_size"] == 2048).all() and (table["model_batch"] == 16).all()


def test_inference_memory_adds_models_crosscoder_weights_the_larger_of_activations_and_splice_and_context():
    total = inference_gib([GEMMA_2_2B, GEMMA_2_2B], d_hidden=16_384, seq_len=1024, model_batch=4)
    weights = (2 * 2 * 2304 * 16_384 + 16_384 + 2 * 2304) * 4  # W_enc, W_dec, the biases: float32
    activations = 2 * (4 * 1024 * (4 * 2304 + 3 * 9216) * 2 + 4 * 4 * 8 * 1024 * 1024)
    row_logits = 1024 * 256_000 * 2  # one 1,024-token row of bfloat16 logits: 0.49 GiB, so one row per re-run
    splice = 2 * row_logits + row_logits + 2 * row_logits + 5 * 4 * 2**25  # clean x 2, spliced, ablated x 2, chunks
    assert splice > activations
    assert total == (2 * 2_614_341_888 * 2 + weights + splice + 0.75 * GIB) / GIB  # 14.12


def test_gemma_runtime_notes_quote_the_plan():
    """The analysis notebooks' and notebook 02's runtime notes state what the plan gives for the gemma-2-2b
    profile's knobs."""
    settings = get_pair("gemma-2-2b").settings
    need = inference_gib([GEMMA_2_2B, GEMMA_2_2B], settings["d_hidden"], settings["seq_len"], settings["model_batch"])
    assert need <= KNOWN_GPUS["T4 16 GB (Colab)"]
    for number in ("01", "03", "04", "05", "06"):
        path = next(NOTEBOOKS.glob(f"{number}_*.ipynb"))
        opening = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert f"{need:.1f} GiB on the GPU" in opening and "T4" in opening, path.name
    training = {name: plan_memory([GEMMA_2_2B, GEMMA_2_2B], settings["d_hidden"], settings["seq_len"],
                                  settings["batch_size"], settings["model_batch"], settings["buffer_tokens"], gib)
                for name, gib in KNOWN_GPUS.items()}
    opening = "".join(json.loads(next(NOTEBOOKS.glob("02_*.ipynb")).read_text())["cells"][0]["source"])
    t4, a100 = training["T4 16 GB (Colab)"], training["A100 40 GB"]
    assert f"{t4.total_gib:.1f} GiB on Colab's T4 with {'one sequence' if t4.model_batch == 1 else '?'}" in opening
    assert f"{a100.total_gib:.1f} GiB with four" in opening and a100.model_batch == 4
