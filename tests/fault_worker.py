"""Launched by ``test_fault_injection``: ``python -m tests.fault_worker DIR ACTIVATION STEPS`` trains a tiny
crosscoder with a checkpoint after every step, until the test kills or interrupts it."""

from __future__ import annotations

import sys

from tests.fakes import tiny_trainer

if __name__ == "__main__":
    folder, activation, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tiny_trainer(folder, activation, steps=steps, checkpoint_every=1, log_every=1000).train()
