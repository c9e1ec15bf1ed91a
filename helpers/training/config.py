"""``TrainConfig``: everything that fixes a training run (the schedule, checkpoints, logging), validated on
construction, and the checks a run makes of its inputs before its first step."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

from ..crosscoder.model import CrossCoder
from ..validation import optional_positive_int, positive_int, real


@dataclass
class TrainConfig:
    """Everything that fixes a training run (saved with every checkpoint).

    Defaults are the replication's except ``num_tokens``. ``checkpoint_dir`` None disables checkpoints.
    ``batch_size`` is the global batch: with ``torchrun`` each of the ranks trains on an equal slice of it.
    ``k_start`` anneals a top-k crosscoder's k down to its own over the first ``k_anneal_frac`` of the steps;
    ``threshold_start_step``: a BatchTopK crosscoder learns its threshold after it (``learns_threshold_at``).
    """

    num_tokens: int = 10_000_000
    batch_size: int = 4096
    lr: float = 5e-5
    beta1: float = 0.9
    beta2: float = 0.999
    l1_coeff: float = 2.0
    l1_warmup_frac: float = 0.05
    lr_decay_frac: float = 0.2
    grad_clip: float = 1.0
    k_start: int | None = None
    k_anneal_frac: float = 0.1
    threshold_start_step: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        positive_int("num_tokens", self.num_tokens)
        positive_int("batch_size", self.batch_size)
        if self.num_tokens < self.batch_size:
            raise ValueError(f"num_tokens ({self.num_tokens}) must be at least one batch ({self.batch_size})")
        real("lr", self.lr, 0, low_open=True)
        real("beta1", self.beta1, 0, 1, high_open=True)
        real("beta2", self.beta2, 0, 1, high_open=True)
        real("l1_coeff", self.l1_coeff, 0)
        for name in ("l1_warmup_frac", "lr_decay_frac", "k_anneal_frac"):
            real(name, getattr(self, name), 0, 1)
        if self.grad_clip is not None:
            real("grad_clip", self.grad_clip, 0, low_open=True)
        optional_positive_int("k_start", self.k_start)
        positive_int("threshold_start_step", self.threshold_start_step, minimum=0)
        positive_int("seed", self.seed, minimum=0)
        positive_int("log_every", self.log_every)
        optional_positive_int("checkpoint_every", self.checkpoint_every)
        positive_int("keep_checkpoints", self.keep_checkpoints)
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, Path)) or not str(self.checkpoint_dir):
                raise ValueError(f"checkpoint_dir must be a folder path or None, got {self.checkpoint_dir!r}")
            self.checkpoint_dir = str(self.checkpoint_dir)

    @property
    def total_steps(self) -> int:
        return max(1, self.num_tokens // self.batch_size)

    def l1_coeff_at(self, step: int) -> float:
        warmup = max(1, int(self.l1_warmup_frac * self.total_steps))
        return self.l1_coeff * min(1.0, (step + 1) / warmup)

    def lr_at(self, step: int) -> float:
        decay_start = int((1 - self.lr_decay_frac) * self.total_steps)
        if step < decay_start:
            return self.lr
        return self.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))

    def k_at(self, step: int, k_final: int | None) -> int | None:
        if k_final is None or self.k_start is None:
            return k_final
        span = max(1, int(self.k_anneal_frac * self.total_steps))
        frac = min(1.0, step / span)
        return int(round(self.k_start + (k_final - self.k_start) * frac))

    def learns_threshold_at(self, step: int) -> bool:
        """Whether a BatchTopK crosscoder updates its inference threshold at ``step``: after ``threshold_start_step``,
        as dictionary_learning's ``BatchTopKCrossCoderTrainer`` (``step > threshold_start_step``). Its default there is
        1,000 steps, which would leave a short run (the toy releases train 600) without a threshold; ours is 0."""
        return step > self.threshold_start_step

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A config from a run's ``train_config.json``; a key that is no field is an error naming the close match."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = {key: difflib.get_close_matches(key, sorted(known), n=1) for key in unknown}
            raise ValueError("unknown training config keys " + ", ".join(
                f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items()))
        return cls(**data)


def check_training_inputs(crosscoder: CrossCoder, buffer, cfg: TrainConfig) -> None:
    """Everything a run needs, checked before its first step: the types, and ``k_start`` against the crosscoder
    (it anneals the top-k variants' ``k`` down, so ``k <= k_start <= d_hidden``)."""
    if not isinstance(crosscoder, CrossCoder):
        raise TypeError(f"Trainer needs a CrossCoder, got {type(crosscoder).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"Trainer needs a TrainConfig, got {type(cfg).__name__}")
    if not callable(getattr(buffer, "next_batch", None)):
        raise TypeError(f"Trainer needs a buffer with next_batch(n) -> [n, n_models, d_model] (a ShufflingBuffer), "
                        f"got {type(buffer).__name__}")
    model = crosscoder.cfg
    if cfg.k_start is not None:
        if model.activation not in ("topk", "batchtopk"):
            raise ValueError(f"k_start={cfg.k_start} anneals k, but the crosscoder's activation is {model.activation} "
                             "(no k); leave k_start None or train a topk / batchtopk crosscoder")
        if not model.k <= cfg.k_start <= model.d_hidden:
            raise ValueError(f"k_start must lie between the crosscoder's k ({model.k}) and d_hidden "
                             f"({model.d_hidden}), got {cfg.k_start}")
