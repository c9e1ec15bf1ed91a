"""Kill training with SIGKILL or interrupt it with SIGINT at random moments; resuming must always give the
weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.training.trainer import Trainer

from .fakes import tiny_buffer, tiny_trainer

STEPS = 80
TRIALS = 5  # per signal; two signals -> 10 trials
ROOT = Path(__file__).parents[1]


def latest_step(folder: Path) -> int:
    pointer = folder / "latest.txt"
    return int(pointer.read_text().strip().removeprefix("step_") or 0) if pointer.exists() else 0


def run_until_signalled(folder: Path, activation: str, sig: int, at_step: int) -> None:
    """Start a worker (a checkpoint after every step) and send it ``sig`` once it has saved step ``at_step``."""
    worker = subprocess.Popen([sys.executable, "-m", "tests.fault_worker", str(folder), activation, str(STEPS)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while latest_step(folder) < at_step:  # training is under way, past the chosen step
        assert worker.poll() is None, f"the worker ended before step {at_step}"
        assert time.monotonic() < deadline, f"the worker did not reach step {at_step} in 120 s"
        time.sleep(0.002)
    worker.send_signal(sig)
    worker.wait(timeout=120)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_resume_after_a_fault_is_bit_identical(tmp_path, sig):
    rng = random.Random(int(sig))
    references = {}
    resumed_at = []
    for trial in range(TRIALS):
        activation = ("relu", "batchtopk")[trial % 2]
        if activation not in references:
            straight = tiny_trainer(None, activation, steps=STEPS, log_every=1000)
            straight.train()
            references[activation] = straight.crosscoder.state_dict()
        folder = tmp_path / f"trial{trial}"
        run_until_signalled(folder, activation, sig, at_step=rng.randint(1, STEPS // 2))
        resumed = Trainer.resume(folder, tiny_buffer())
        resumed_at.append(resumed.step)
        resumed.train()
        for name, tensor in references[activation].items():
            assert torch.equal(resumed.crosscoder.state_dict()[name], tensor), (trial, resumed_at[-1], name)
        assert not list(folder.glob(".step_*")) or sig == signal.SIGKILL
    print(f"{signal.Signals(sig).name}: resumed at steps {resumed_at} of {STEPS}, all bit-identical")
    assert sum(step < STEPS for step in resumed_at) >= TRIALS - 1, f"the faults must land mid-run: {resumed_at}"
