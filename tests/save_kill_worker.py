"""Run by ``test_checkpoint_safety`` in a forkserver process (imports paid once): ``save_forever(DIR, ready)``
saves two different crosscoders (``candidates()``) into DIR, one after the other, until the test kills it."""

from __future__ import annotations

from helpers.crosscoder.checkpoints import save
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

# Large enough that a save takes tens of milliseconds, so a kill lands inside one.
D_MODEL, D_HIDDEN = 256, 4096


def candidates() -> dict[str, CrossCoder]:
    """Three checkpoints that differ in weights and in config: the one saved first, and the two the worker
    alternates between."""
    return {
        "old": CrossCoder(CrossCoderConfig(d_model=D_MODEL, d_hidden=D_HIDDEN, seed=0)),
        "relu": CrossCoder(CrossCoderConfig(d_model=D_MODEL, d_hidden=D_HIDDEN, seed=1, dec_init_norm=0.5)),
        "topk": CrossCoder(CrossCoderConfig(d_model=D_MODEL, d_hidden=D_HIDDEN, seed=2, activation="topk", k=8)),
    }


def save_forever(folder: str, ready) -> None:
    crosscoders = candidates()
    ready.set()
    while True:
        for name in ("relu", "topk"):
            save(crosscoders[name], folder, extra_cfg={"name": name})
