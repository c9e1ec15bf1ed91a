"""Training a crosscoder: ``TrainConfig`` and ``Trainer``.

The schedule follows the replication: Adam, the L1 coefficient warmed up linearly over the first 5% of
steps, the learning rate decayed linearly to 0 over the last 20%, gradients clipped at norm 1. For the
top-k variants ``k`` can be annealed from ``k_start`` down to the crosscoder's ``k``; their aux-k loss
is part of ``CrossCoder.losses``. Checkpoints (every ``checkpoint_every`` steps, on Ctrl-C, and at the
end) hold the crosscoder, the optimiser, the step, the buffer position and the RNG states, so that
``Trainer.resume`` continues exactly (``helpers.training.run_folder`` keeps them safe on disk).

Data-parallel (``torchrun``, see ``helpers.distributed``): ``batch_size`` is the global batch, each rank
draws ``batch_size / world_size`` activations from its own shard of the data, gradients and every batch
statistic are shared, so N ranks train exactly as one would on the same global batches. Rank 0 alone
writes checkpoints, holding every rank's buffer position; a run resumes at the world size it was saved
with. Ctrl-C, NaN checks and logging are agreed across ranks.

Interrupts take effect between steps: Ctrl-C (SIGINT, also Jupyter's stop button) lets the step in
progress finish, saves a checkpoint and returns; a second Ctrl-C stops at once without saving (the last
complete checkpoint stays as it was). A NaN or Inf loss or gradient stops training before the optimiser
touches the weights, with an error naming the last good checkpoint, which therefore holds finite weights.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..activations.data import source_fingerprint
from ..crosscoder.checkpoints import load, save
from ..crosscoder.model import CrossCoder
from ..distributed import (
    average_gradients,
    broadcast_module,
    broadcast_object,
    gather_objects,
    global_batch,
    rank_and_world,
    sum_over_batch,
)
from ..files import read_json, write_json
from ..registry import model_roles
from ..validation import positive_int
from .config import TrainConfig, check_training_inputs
from .run_folder import CheckpointDirError, RunFolder, latest_checkpoint, new_run_id, run_id_of

TRAINER_STATE = "trainer_state.pt"
TRAIN_CONFIG = "train_config.json"


class TrainingDivergedError(RuntimeError):
    """The loss or a gradient became NaN or Inf."""


class Trainer:
    """Trains ``crosscoder`` on batches from ``buffer`` (raw activations; the crosscoder normalises).

    ``history`` holds one dict per logged step (step, losses, L0, explained variance, lr, l1 coeff,
    dead fraction) for plotting; when data-parallel, metrics are averaged over the ranks (each rank's
    explained variance centres on its own slice). In a process group each rank passes its own ``buffer``
    (a shard of the data, e.g. ``helpers.activations.data.TokenShard`` or
    ``DiskCacheSource(..., shard=(rank, world))``).
    """

    def __init__(self, crosscoder: CrossCoder, buffer, cfg: TrainConfig, device: str | torch.device = "cpu"):
        check_training_inputs(crosscoder, buffer, cfg)
        self.rank, self.world_size = rank_and_world()
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} is the global batch and must divide evenly over "
                             f"{self.world_size} ranks")
        self.crosscoder, self.buffer, self.cfg = crosscoder.to(device), buffer, cfg
        self.device = torch.device(device)
        broadcast_module(self.crosscoder)  # every rank starts from rank 0's weights and scale factors
        self.optimizer = torch.optim.Adam(crosscoder.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.history: list[dict] = []
        self.last_checkpoint: Path | None = None
        self.run_id = new_run_id()
        self._run_folder: RunFolder | None = None
        self._stop_requested = self._stop_agreed = False
        self._wandb = None
        self._failed_callbacks: set[str] = set()
        torch.manual_seed(cfg.seed)

    # ------------------------------------------------------------------ checkpoints

    def _claim_run_folder(self) -> None:
        """Make ``checkpoint_dir`` this run's before the first step (rank 0 claims, every rank learns the outcome),
        so a folder holding another run is refused before any work, not after it."""
        if not self.cfg.checkpoint_dir or self._run_folder is not None:
            return
        refusal = None
        if self.rank == 0:
            folder = RunFolder(self.cfg.checkpoint_dir, self.run_id, self.cfg.keep_checkpoints)
            try:
                folder.claim()
                self._run_folder = folder
            except CheckpointDirError as error:
                refusal = str(error)
        refusal = broadcast_object(refusal)
        if refusal is not None:
            raise CheckpointDirError(refusal)
        if self.rank != 0:
            self._run_folder = RunFolder(self.cfg.checkpoint_dir, self.run_id, self.cfg.keep_checkpoints)

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint_dir/step_NNNNNNN`` and point ``latest.txt`` at it (``helpers.training.run_folder``)."""
        if not self.cfg.checkpoint_dir:
            return None
        self._claim_run_folder()
        buffers = gather_objects((self.buffer.state_dict(), source_fingerprint(self.buffer)))
        if self.rank != 0:
            self.last_checkpoint = broadcast_object(None)
            return self.last_checkpoint
        not_finite = [name for name, p in self.crosscoder.named_parameters() if not torch.isfinite(p).all()]
        if not_finite:
            raise TrainingDivergedError(f"refusing to checkpoint non-finite weights {not_finite} at step {self.step}; "
                                        f"the last good checkpoint is {self.last_checkpoint or 'none'}")
        state = {
            "step": self.step,
            "run_id": self.run_id,
            "optimizer": self.optimizer.state_dict(),
            "buffer": buffers[0][0],
            "buffer_fingerprint": buffers[0][1],
            "world_size": self.world_size,
            "buffer_by_rank": [state for state, _ in buffers],
            "buffer_fingerprint_by_rank": [fingerprint for _, fingerprint in buffers],
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
        }

        def write(folder: Path) -> None:
            save(self.crosscoder, folder, extra_cfg={"train_config": asdict(self.cfg), "step": self.step})
            torch.save(state, folder / TRAINER_STATE)
            write_json(folder / TRAIN_CONFIG, asdict(self.cfg))

        self.last_checkpoint = broadcast_object(self._run_folder.write(self.step, write))
        return self.last_checkpoint

    @staticmethod
    def latest_checkpoint(checkpoint_dir: str | Path) -> Path:
        """The checkpoint ``checkpoint_dir/latest.txt`` names (checked to exist)."""
        return latest_checkpoint(checkpoint_dir)

    @classmethod
    def resume(cls, checkpoint_dir: str | Path, buffer, device: str | torch.device = "cpu") -> Trainer:
        """Rebuild a trainer from the latest checkpoint in ``checkpoint_dir``; ``buffer`` must be built
        like the original (same source and settings); it is rewound to where training stopped. A
        data-parallel run resumes only at the world size it was saved with, each rank from its own position."""
        folder = latest_checkpoint(checkpoint_dir)
        cfg = TrainConfig.from_dict(read_json(folder / TRAIN_CONFIG))
        cfg.checkpoint_dir = str(checkpoint_dir)
        trainer = cls(load(folder, device=device), buffer, cfg, device)
        state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
        saved_world = int(state.get("world_size", 1))
        if saved_world != trainer.world_size:
            raise CheckpointDirError(
                f"{folder} was written by a run on {saved_world} rank(s), this one has {trainer.world_size}: each "
                f"rank's data position is saved, so resume with the same world size (torchrun --nproc-per-node / "
                f"--nnodes). To continue at another size, start a new run from the weights: "
                f"helpers.load({str(folder)!r}).")
        buffer_state = state.get("buffer_by_rank", [state["buffer"]])[trainer.rank]
        saved = state.get("buffer_fingerprint_by_rank", [state.get("buffer_fingerprint")])[trainer.rank]
        given = source_fingerprint(buffer)
        if saved is not None and saved != given:
            raise CheckpointDirError(f"{folder} was trained on another buffer than the one given: saved {saved}, "
                                     f"given {given}. Build the buffer as the run did (same source, size, seed).")
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step, trainer.history = int(state["step"]), list(state["history"])
        trainer.run_id = str(state.get("run_id") or run_id_of(checkpoint_dir) or trainer.run_id)
        trainer.last_checkpoint = folder
        buffer.load_state_dict(buffer_state)
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return trainer

    # ------------------------------------------------------------------ training

    def _log(self, losses, lr: float, l1_coeff: float, k: int | None, seconds: float) -> dict:
        """Record the step's metrics (averaged over ranks when data-parallel) in ``history``."""
        names = ["loss", "reconstruction", "sparsity", "aux_k", "l0", "explained_variance", "delta",
                 *(f"explained_variance_{role}" for role in model_roles(self.crosscoder.cfg.n_models))]
        values = torch.cat([torch.stack([losses.total, losses.reconstruction, losses.sparsity, losses.aux_k,
                                         losses.l0, losses.explained_variance, losses.delta]).detach().float(),
                            losses.explained_variance_per_model.float()])
        values = (sum_over_batch(values) / self.world_size).tolist()
        record = {
            "step": self.step,
            **dict(zip(names, values)),
            "dead_fraction": self.crosscoder.dead_mask().float().mean().item(),
            "lr": lr,
            "l1_coeff": l1_coeff,
            "k": k,
            "seconds": seconds,
        }
        self.history.append(record)
        if self._wandb is not None:
            self._notify("Weights & Biases logging", lambda: self._wandb.log(record, step=self.step))
        return record

    def _notify(self, name: str, call: Callable[[], object]) -> None:
        """Run a logging callback. One that raises is reported once and switched off; training goes on, so a
        broken plot or logger never costs a run."""
        if name in self._failed_callbacks:
            return
        try:
            call()
        except Exception as error:  # noqa: BLE001 - any failure of a logger, reported
            self._failed_callbacks.add(name)
            print(f"{name} failed at step {self.step} ({type(error).__name__}: {error}); it is switched off for the "
                  "rest of this run, and training goes on", file=sys.stderr)

    def _request_stop(self, signum, frame) -> None:
        """SIGINT handler: the first Ctrl-C stops after the step in progress; a second one stops at once."""
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        print("\nstopping after this step (press Ctrl-C again to stop at once, without saving)")

    def _stopping(self) -> bool:
        """Whether to stop before the next step: this process's Ctrl-C, or when data-parallel, the ranks'
        agreement on it from the last step (so that every rank stops after the same step)."""
        return self._stop_requested if self.world_size == 1 else self._stop_agreed

    def _step(self, end: int, started: float, progress, on_log: Callable[[dict, list[dict]], None] | None) -> None:
        """One optimiser step on the next batch, then logging and the periodic checkpoint."""
        cfg, crosscoder = self.cfg, self.crosscoder
        lr, l1_coeff = cfg.lr_at(self.step), cfg.l1_coeff_at(self.step)
        k = cfg.k_at(self.step, crosscoder.cfg.k)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = self.buffer.next_batch(cfg.batch_size // self.world_size).to(self.device)
        crosscoder.learns_threshold = cfg.learns_threshold_at(self.step)
        losses = crosscoder.losses(x, l1_coeff=l1_coeff, k=k)
        # one collective agrees on the loss (finite on every rank?) and on Ctrl-C (pressed on any rank?)
        agreed = sum_over_batch(torch.stack([losses.total.detach().float(),
                                             torch.tensor(float(self._stop_requested), device=x.device)]))
        self._stop_agreed = bool(agreed[1] > 0)
        if not math.isfinite(agreed[0].item()):
            raise TrainingDivergedError(
                f"loss is {losses.total.item()} at step {self.step} on rank {self.rank} (reconstruction "
                f"{losses.reconstruction.item()}, input finite: {bool(torch.isfinite(x).all())}). "
                f"Last good checkpoint: {self.last_checkpoint or 'none written'}. Lower lr or check the activations.")
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        average_gradients(crosscoder.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_(crosscoder.parameters(), cfg.grad_clip or math.inf)
        if not torch.isfinite(grad_norm):
            raise TrainingDivergedError(
                f"gradient norm is {grad_norm.item()} at step {self.step} although the loss is finite; the weights "
                f"were not updated. Last good checkpoint: {self.last_checkpoint or 'none written'}.")
        self.optimizer.step()
        self.step += 1
        progress.update(1)
        if self.step % cfg.log_every == 0 or self.step == end:
            record = self._log(losses, lr, l1_coeff, k, time.time() - started)
            progress.set_postfix(loss=f"{record['loss']:.3g}", l0=f"{record['l0']:.1f}",
                                 fve=f"{record['explained_variance']:.3f}")
            if on_log is not None and self.rank == 0:
                self._notify(f"on_log ({getattr(on_log, '__qualname__', type(on_log).__name__)})",
                             lambda: on_log(record, self.history))
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()

    def train(self, steps: int | None = None,
              on_log: Callable[[dict, list[dict]], None] | None = None) -> list[dict]:
        """Run ``steps`` more steps (default: to ``cfg.total_steps``); returns ``history``.

        ``on_log(record, history)`` is called on rank 0 after every logged step (e.g. a
        ``helpers.tutorial.live_view.LiveTrainingView``).

        Ctrl-C takes effect between steps: it saves a checkpoint and returns (see the module docstring).
        A NaN / Inf loss or gradient raises ``TrainingDivergedError``.
        """
        cfg, crosscoder = self.cfg, self.crosscoder
        if steps is not None:
            positive_int("steps", steps)
        if on_log is not None and not callable(on_log):
            raise TypeError(f"on_log must be a function (record, history) or None, got {type(on_log).__name__}")
        self._claim_run_folder()
        end = cfg.total_steps if steps is None else min(cfg.total_steps, self.step + steps)
        if cfg.wandb_project and self._wandb is None and self.rank == 0:
            import wandb

            wandb.init(project=cfg.wandb_project, config=asdict(cfg) | crosscoder.cfg.to_dict())
            self._wandb = wandb
        crosscoder.train()
        progress = tqdm(total=end - self.step, desc="training crosscoder", disable=self.rank != 0)
        started = time.time()
        self._stop_requested = self._stop_agreed = False
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, self._request_stop) if in_main_thread else None
        try:
            with global_batch():
                while self.step < end and not self._stopping():
                    self._step(end, started, progress, on_log)
        except KeyboardInterrupt:
            print(f"stopped mid-step at step {self.step}, nothing saved; the last complete checkpoint is "
                  f"{self.last_checkpoint or 'none'}")
            return self.history
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)
            progress.close()
            crosscoder.eval()
        if self._stopping():
            where = self.save_checkpoint()
            print(f"interrupted at step {self.step}; " + (f"checkpoint saved to {where}" if where else
                                                          "set checkpoint_dir to keep progress on interruption"))
        elif cfg.checkpoint_dir and self.step == end:
            self.save_checkpoint()
        return self.history
