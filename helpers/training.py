"""Training a crosscoder: ``TrainConfig`` and ``Trainer``.

The schedule follows the replication: Adam, the L1 coefficient warmed up linearly over the first 5% of
steps, the learning rate decayed linearly to 0 over the last 20%, gradients clipped at norm 1. For the
top-k variants ``k`` can be annealed from ``k_start`` down to the crosscoder's ``k``; their aux-k loss
is part of ``CrossCoder.losses``. Checkpoints (every ``checkpoint_every`` steps, on Ctrl-C, and at the
end) hold the crosscoder, the optimiser, the step, the buffer position and the RNG states, so that
``Trainer.resume`` continues exactly; a NaN or Inf loss stops training with an error and leaves the
last good checkpoint in place.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoints import load, save
from .crosscoder import CrossCoder
from .files import write_atomically, write_json
from .registry import model_roles

TRAINER_STATE = "trainer_state.pt"
TRAIN_CONFIG = "train_config.json"
LATEST = "latest.txt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf."""


@dataclass
class TrainConfig:
    """Everything that fixes a training run (saved with every checkpoint).

    Defaults are the replication's except ``num_tokens``. ``checkpoint_dir`` None disables checkpoints.
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
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    wandb_project: str | None = None

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

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Trainer:
    """Trains ``crosscoder`` on batches from ``buffer`` (raw activations; the crosscoder normalises).

    ``history`` holds one dict per logged step (step, losses, L0, explained variance, lr, l1 coeff,
    dead fraction) for plotting.
    """

    def __init__(self, crosscoder: CrossCoder, buffer, cfg: TrainConfig, device: str | torch.device = "cpu"):
        self.crosscoder, self.buffer, self.cfg = crosscoder.to(device), buffer, cfg
        self.device = torch.device(device)
        self.optimizer = torch.optim.Adam(crosscoder.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.history: list[dict] = []
        self.last_checkpoint: Path | None = None
        self._wandb = None
        torch.manual_seed(cfg.seed)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint_dir/step_NNNNNNN`` and point ``latest.txt`` at it (both atomically)."""
        if not self.cfg.checkpoint_dir:
            return None
        root = Path(self.cfg.checkpoint_dir)
        final = root / f"step_{self.step:07d}"
        staging = root / f".{final.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        save(self.crosscoder, staging, extra_cfg={"train_config": asdict(self.cfg), "step": self.step})
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
        }
        torch.save(state, staging / TRAINER_STATE)
        write_json(staging / TRAIN_CONFIG, asdict(self.cfg))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        write_atomically(root / LATEST, lambda tmp: tmp.write_text(final.name))
        self.last_checkpoint = final
        for old in sorted(root.glob("step_*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old)
        return final

    @staticmethod
    def latest_checkpoint(checkpoint_dir: str | Path) -> Path:
        pointer = Path(checkpoint_dir) / LATEST
        if not pointer.exists():
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir} (no {LATEST})")
        return Path(checkpoint_dir) / pointer.read_text().strip()

    @classmethod
    def resume(cls, checkpoint_dir: str | Path, buffer, device: str | torch.device = "cpu") -> Trainer:
        """Rebuild a trainer from the latest checkpoint in ``checkpoint_dir``; ``buffer`` must be built
        like the original (same source and settings); it is rewound to where training stopped."""
        folder = cls.latest_checkpoint(checkpoint_dir)
        cfg = TrainConfig.from_dict(json.loads((folder / TRAIN_CONFIG).read_text()))
        trainer = cls(load(folder, device=device), buffer, cfg, device)
        state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step, trainer.history = int(state["step"]), list(state["history"])
        trainer.last_checkpoint = folder
        buffer.load_state_dict(state["buffer"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return trainer

    # ------------------------------------------------------------------ training

    def _log(self, losses, lr: float, l1_coeff: float, k: int | None, seconds: float) -> dict:
        record = {
            "step": self.step,
            "loss": losses.total.item(),
            "reconstruction": losses.reconstruction.item(),
            "sparsity": losses.sparsity.item(),
            "aux_k": losses.aux_k.item(),
            "l0": losses.l0.item(),
            "explained_variance": losses.explained_variance.item(),
            **{f"explained_variance_{role}": v
               for role, v in zip(model_roles(self.crosscoder.cfg.n_models), losses.explained_variance_per_model.tolist())},
            "dead_fraction": self.crosscoder.dead_mask().float().mean().item(),
            "lr": lr,
            "l1_coeff": l1_coeff,
            "k": k,
            "seconds": seconds,
        }
        self.history.append(record)
        if self._wandb is not None:
            self._wandb.log(record, step=self.step)
        return record

    def train(self, steps: int | None = None) -> list[dict]:
        """Run ``steps`` more steps (default: to ``cfg.total_steps``); returns ``history``.

        Ctrl-C saves a checkpoint and returns; a NaN / Inf loss raises ``TrainingDivergedError``.
        """
        cfg, crosscoder = self.cfg, self.crosscoder
        end = cfg.total_steps if steps is None else min(cfg.total_steps, self.step + steps)
        if cfg.wandb_project and self._wandb is None:
            import wandb

            wandb.init(project=cfg.wandb_project, config=asdict(cfg) | crosscoder.cfg.to_dict())
            self._wandb = wandb
        crosscoder.train()
        progress = tqdm(total=end - self.step, desc="training crosscoder")
        started = time.time()
        try:
            while self.step < end:
                lr, l1_coeff = cfg.lr_at(self.step), cfg.l1_coeff_at(self.step)
                k = cfg.k_at(self.step, crosscoder.cfg.k)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                x = self.buffer.next_batch(cfg.batch_size).to(self.device)
                losses = crosscoder.losses(x, l1_coeff=l1_coeff, k=k)
                if not math.isfinite(losses.total.item()):
                    raise TrainingDivergedError(
                        f"loss is {losses.total.item()} at step {self.step} (reconstruction "
                        f"{losses.reconstruction.item()}, input finite: {bool(torch.isfinite(x).all())}). "
                        f"Last good checkpoint: {self.last_checkpoint or 'none written'}. "
                        "Lower lr or check the activations."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                torch.nn.utils.clip_grad_norm_(crosscoder.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                progress.update(1)
                if self.step % cfg.log_every == 0 or self.step == end:
                    record = self._log(losses, lr, l1_coeff, k, time.time() - started)
                    progress.set_postfix(loss=f"{record['loss']:.3g}", l0=f"{record['l0']:.1f}",
                                         fve=f"{record['explained_variance']:.3f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            where = self.save_checkpoint()
            print(f"interrupted at step {self.step}; " + (f"checkpoint saved to {where}" if where else
                                                          "set checkpoint_dir to keep progress on interruption"))
            return self.history
        finally:
            progress.close()
            crosscoder.eval()
        if cfg.checkpoint_dir and self.step == end:
            self.save_checkpoint()
        return self.history
