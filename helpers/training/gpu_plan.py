"""How much GPU memory a pair + crosscoder + optimiser + training step take, and batch sizes that fit.

The parts, in bytes:

- **models**: every parameter of both models in their dtype (exact for a loaded pair);
- **crosscoder**: ``W_enc``, ``W_dec``, the biases in float32, and as much again for the gradients and twice
  for Adam's two moments (exact: ``tests/test_gpu_plan.py`` compares with the tensors of a real step);
- **training step**: the dense ``[batch, d_hidden]`` tensors of a step (pre-activations, activations, their
  gradient and the scores; four float32 copies) plus eight ``[batch, n_models, d_model]`` ones;
- **splicing** (the analysis notebooks' CE / KL): the logits of one re-run (``SPLICE_LOGITS_BYTES`` of them at
  most, ``helpers.activations.sites``) for each model's clean run, the spliced run and the zero-ablated row, in
  the models' dtype, plus five float32 chunks of log-probabilities;
- **harvest**: the widest activations of one block during a forward pass without a graph, for
  ``model_batch`` sequences: the residual stream and its normalised copies, the MLP's hidden layers and the
  attention scores (eager attention, float32), twice over for what the next layer allocates before the
  previous is freed;
- a fixed 0.75 GiB for the CUDA context and the allocator's slack.

The shuffling buffer lives in CPU memory (``buffer``), so it is reported but not counted against the GPU.
The step and harvest terms are estimates (they depend on the attention kernel and the allocator); leave the
headroom the plan leaves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..activations.sites import LOG_PROB_CHUNK_VALUES, splice_rows_per_pass
from ..validation import positive_int, real

GIB = 2**30
PLAN_KNOBS = ("d_hidden", "seq_len", "batch_size", "model_batch", "buffer_tokens")  # plan_memory's, in order
CONTEXT_BYTES = int(0.75 * GIB)
# usable memory of common GPUs (what torch.cuda reports as total), GiB
KNOWN_GPUS = {"T4 16 GB (Colab)": 14.7, "L4 24 GB": 22.0, "A100 40 GB": 39.4, "A100 80 GB": 79.1,
              "H100 80 GB": 79.1}


@dataclass(frozen=True)
class ModelShape:
    """What the memory of one model depends on: parameters, width, MLP width, heads, vocabulary and bytes per
    value."""

    n_params: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_vocab: int
    bytes_per_value: int = 2

    def __post_init__(self) -> None:
        for name in ("n_params", "d_model", "d_mlp", "n_heads", "d_vocab", "bytes_per_value"):
            positive_int(name, getattr(self, name))

    @classmethod
    def of(cls, model) -> ModelShape:
        """The shape of a loaded model (a TransformerBridge, or anything with ``cfg`` and ``parameters()``)."""
        parameters = list(model.parameters())
        return cls(n_params=sum(p.numel() for p in parameters), d_model=int(model.cfg.d_model),
                   d_mlp=int(model.cfg.d_mlp), n_heads=int(model.cfg.n_heads), d_vocab=int(model.cfg.d_vocab),
                   bytes_per_value=parameters[0].element_size())


@dataclass(frozen=True)
class MemoryPlan:
    """A plan for one GPU: each part in GiB, the batch sizes chosen and whether it all fits."""

    gpu_gib: float
    models_gib: float
    crosscoder_gib: float
    step_gib: float
    harvest_gib: float
    context_gib: float
    total_gib: float
    buffer_cpu_gib: float
    batch_size: int
    model_batch: int
    fits: bool

    def as_dict(self) -> dict:
        return asdict(self)


def models_bytes(models: list[ModelShape]) -> int:
    """Every parameter of every model, in its dtype."""
    return sum(m.n_params * m.bytes_per_value for m in models)


def inference_gib(models: list[ModelShape], d_hidden: int, seq_len: int, model_batch: int) -> float:
    """GPU memory (GiB) to run ``models`` with a float32 crosscoder of ``d_hidden`` latents and no training (the
    notebooks that analyse a crosscoder): the models, the crosscoder's weights (a quarter of
    ``crosscoder_bytes``), the larger of one block's activations for ``model_batch`` sequences of ``seq_len``
    tokens and a splice's logits (the two never live together), and the CUDA context."""
    weights = crosscoder_bytes(len(models), models[0].d_model, d_hidden) // 4
    working = max(harvest_bytes(models[0], model_batch, seq_len), splice_bytes(models, seq_len, model_batch))
    return (models_bytes(models) + weights + working + CONTEXT_BYTES) / GIB


def splice_bytes(models: list[ModelShape], seq_len: int, model_batch: int) -> int:
    """Peak logits of ``helpers.analysis.evals.splice_metrics`` on batches of ``model_batch`` sequences: one
    re-run's rows (``splice_rows_per_pass``) of logits for every model's clean run and for the spliced run, one
    zero-ablated row per model, and five float32 chunks of log-probabilities."""
    shape = models[0]
    rows = min(model_batch, splice_rows_per_pass(seq_len, shape.d_vocab, shape.bytes_per_value))
    row_bytes = seq_len * shape.d_vocab * shape.bytes_per_value
    return (len(models) + 1) * rows * row_bytes + len(models) * row_bytes + 5 * 4 * LOG_PROB_CHUNK_VALUES


def crosscoder_bytes(n_models: int, d_model: int, d_hidden: int) -> int:
    """Parameters, gradients and Adam's two moments of a float32 crosscoder: 4 copies of its weights."""
    n_weights = 2 * n_models * d_model * d_hidden + d_hidden + n_models * d_model
    return 4 * 4 * n_weights


def step_bytes(batch_size: int, n_models: int, d_model: int, d_hidden: int) -> int:
    """The float32 activations of one training step (see the module docstring)."""
    return 4 * batch_size * (4 * d_hidden + 8 * n_models * d_model)


def harvest_bytes(shape: ModelShape, model_batch: int, seq_len: int) -> int:
    """Peak activations of one block's forward pass without a graph, for ``model_batch`` sequences."""
    per_token = 4 * shape.d_model + 3 * shape.d_mlp  # residual + normed copies, gate / up / act of the MLP
    values = model_batch * seq_len * per_token * shape.bytes_per_value
    scores = 4 * model_batch * shape.n_heads * seq_len * seq_len  # eager attention scores in float32
    return 2 * (values + scores)


def plan_memory(models: list[ModelShape], d_hidden: int, seq_len: int, batch_size: int, model_batch: int,
                buffer_tokens: int, gpu_gib: float, storage_bytes: int = 4) -> MemoryPlan:
    """The plan for ``models`` (base first) and a crosscoder of ``d_hidden`` latents on a GPU of ``gpu_gib``:
    the largest training batch (a power of two, at most ``batch_size``) and then the largest model batch (at
    most ``model_batch``) that fit; ``fits`` is False if even a batch of 256 and one sequence do not."""
    if not models or not all(isinstance(m, ModelShape) for m in models):
        raise ValueError(f"models must be a non-empty list of ModelShape, got {models!r:.120}")
    for name, value in (("d_hidden", d_hidden), ("seq_len", seq_len), ("batch_size", batch_size), ("model_batch",
                        model_batch), ("buffer_tokens", buffer_tokens), ("storage_bytes", storage_bytes)):
        positive_int(name, value)
    real("gpu_gib", gpu_gib, 0, low_open=True)
    n_models, d_model = len(models), models[0].d_model
    fixed = models_bytes(models) + crosscoder_bytes(n_models, d_model, d_hidden) + CONTEXT_BYTES
    budget = int(gpu_gib * GIB)
    batch = batch_size
    while batch > 256 and fixed + step_bytes(batch, n_models, d_model, d_hidden) > budget:
        batch //= 2
    left = budget - fixed - step_bytes(batch, n_models, d_model, d_hidden)
    sequences = model_batch
    while sequences > 1 and harvest_bytes(models[0], sequences, seq_len) > left:
        sequences //= 2
    parts = {"models": models_bytes(models),
             "crosscoder": crosscoder_bytes(n_models, d_model, d_hidden),
             "step": step_bytes(batch, n_models, d_model, d_hidden),
             "harvest": harvest_bytes(models[0], sequences, seq_len), "context": CONTEXT_BYTES}
    total = sum(parts.values())
    return MemoryPlan(gpu_gib=gpu_gib, **{f"{k}_gib": v / GIB for k, v in parts.items()}, total_gib=total / GIB,
                      buffer_cpu_gib=buffer_tokens * n_models * d_model * storage_bytes / GIB,
                      batch_size=batch, model_batch=sequences, fits=total <= budget)


def detected_gpu_gib() -> float | None:
    """Total memory of this machine's first GPU in GiB (``None`` without one)."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GIB


def plan_for_pair(pair, settings: dict, gpus: dict[str, float] | None = None, bf16_models: bool = True):
    """A table (pandas) of plans for ``pair``'s loaded models and the knobs in ``settings`` (``d_hidden``,
    ``seq_len``, ``batch_size``, ``model_batch``, ``buffer_tokens``), one row per GPU: this machine's, if it has
    one, and ``KNOWN_GPUS``. ``bf16_models`` plans for the models in bfloat16, as on a GPU."""
    import pandas as pd

    missing = [knob for knob in PLAN_KNOBS if knob not in settings]
    if missing:
        raise ValueError(f"settings lacks {missing}; give the pair's knobs (pair.profile.settings_with())")
    shapes = [ModelShape.of(model) for model in pair.models]
    if bf16_models:
        shapes = [ModelShape(s.n_params, s.d_model, s.d_mlp, s.n_heads, s.d_vocab, 2) for s in shapes]
    gpus = dict(KNOWN_GPUS if gpus is None else gpus)
    if (here := detected_gpu_gib()) is not None:
        gpus = {f"this GPU ({torch.cuda.get_device_name(0)})": here, **gpus}
    rows = {name: plan_memory(shapes, *(settings[knob] for knob in PLAN_KNOBS), gib).as_dict()
            for name, gib in gpus.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("gpu")
