"""Paired activations: harvesting, scale-factor estimation, the shuffling buffer, the disk cache.

Data flow: a token source (``helpers.data``) -> ``HarvestingSource`` (every model run on the same
tokens only up to the hook point, BOS dropped) or ``DiskCacheSource`` (a harvest written once to
memory-mapped shards) -> ``ShufflingBuffer`` -> batches of raw activations ``[batch, n_models, d_model]``.

The buffer works in chunks: it draws ``buffer_tokens`` fresh activations, shuffles them with a
generator seeded by ``(seed, chunk)``, and serves each exactly once before drawing the next chunk. So no
activation is served twice (the replication's stale-buffer bug cannot happen), and its state is three
numbers plus the source's position at the chunk's start: resuming re-draws that chunk and continues.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .dtypes import DTYPES
from .files import write_atomically, write_json
from .sites import harvest


class ActivationSource(Protocol):
    """Anything that yields raw paired activations ``[n, n_models, d_model]`` and can rewind to a state."""

    def next_activations(self, n: int) -> torch.Tensor: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class HarvestingSource:
    """Harvests activations on the fly from a token source, ``model_batch_size`` sequences at a time.

    Drops BOS (position 0, whose norm is an outlier) and keeps leftover activations of a harvested
    batch for the next request, so nothing harvested is wasted or served twice.
    """

    def __init__(self, models: list, token_source, hook_point: str, model_batch_size: int = 32):
        self.models, self.token_source, self.hook_point = models, token_source, hook_point
        self.model_batch_size = model_batch_size
        self.tokens_harvested = 0
        self._pending = torch.empty(0)
        self._last_batch_state: dict = token_source.state_dict()
        self._last_batch_size = 0

    def _harvest_batch(self) -> torch.Tensor:
        self._last_batch_state = self.token_source.state_dict()
        tokens = self.token_source.next_batch(self.model_batch_size)
        acts = harvest(self.models, tokens, self.hook_point)[:, 1:]
        acts = acts.reshape(-1, *acts.shape[2:]).cpu()
        self._last_batch_size = acts.shape[0]
        self.tokens_harvested += acts.shape[0]
        return acts

    def next_activations(self, n: int) -> torch.Tensor:
        chunks, have = [self._pending], self._pending.shape[0]
        while have < n:
            chunks.append(self._harvest_batch())
            have += chunks[-1].shape[0]
        everything = torch.cat([c for c in chunks if c.numel()])
        self._pending = everything[n:]
        return everything[:n]

    def state_dict(self) -> dict:
        """Where the pending activations' batch started and how many of them were already served."""
        pending = self._pending.shape[0]
        return {"token_source": self._last_batch_state if pending else self.token_source.state_dict(),
                "skip": self._last_batch_size - pending if pending else 0, "tokens_harvested": self.tokens_harvested}

    def load_state_dict(self, state: dict) -> None:
        """Rewind the token source; re-harvest a partly served batch and drop what was served of it."""
        self.token_source.load_state_dict(state["token_source"])
        self._pending = torch.empty(0)
        skip = int(state["skip"])
        if skip:
            self._pending = self._harvest_batch()[skip:]
        self.tokens_harvested = int(state["tokens_harvested"])


@torch.no_grad()
def estimate_scale_factors(source: ActivationSource, n_activations: int = 100_000) -> torch.Tensor:
    """Per-model factor ``sqrt(d_model) / mean ||x||`` over ``n_activations`` activations, ``[n_models]``.

    The activations are drawn from ``source`` (and so not served to training).
    """
    acts = source.next_activations(n_activations).float()
    d_model = acts.shape[-1]
    return math.sqrt(d_model) / acts.norm(dim=-1).mean(0)


class ShufflingBuffer:
    """Serves shuffled batches of raw activations, each activation exactly once (see module docstring).

    Args:
        source: where fresh activations come from.
        buffer_tokens: activations held at once (memory: ``buffer_tokens * n_models * d_model`` times the
            storage dtype's size; ``memory_gib`` sets it from a budget instead).
        storage_dtype: dtype activations are stored in (``bfloat16`` halves memory).
        seed: seed of the shuffles.
    """

    def __init__(self, source: ActivationSource, buffer_tokens: int | None = None, memory_gib: float | None = None,
                 storage_dtype: str = "float32", seed: int = 0, n_models: int | None = None,
                 d_model: int | None = None):
        if (buffer_tokens is None) == (memory_gib is None):
            raise ValueError("give exactly one of buffer_tokens or memory_gib")
        if storage_dtype not in DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(DTYPES)}, got {storage_dtype!r}")
        self.source, self.seed, self.storage_dtype = source, seed, DTYPES[storage_dtype]
        if memory_gib is not None:
            if n_models is None or d_model is None:
                raise ValueError("memory_gib needs n_models and d_model to size the buffer")
            bytes_per = n_models * d_model * torch.finfo(self.storage_dtype).bits // 8
            buffer_tokens = int(memory_gib * 2**30 // bytes_per)
        if buffer_tokens <= 0:
            raise ValueError(f"the buffer must hold at least one activation, got {buffer_tokens}")
        self.buffer_tokens = buffer_tokens
        self.chunk, self.pointer = -1, 0
        self._chunk_start_state: dict = {}
        self._storage = torch.empty(0)
        self._order = torch.empty(0, dtype=torch.long)

    def _draw_chunk(self) -> None:
        self._chunk_start_state = self.source.state_dict()
        self.chunk += 1
        self._storage = self.source.next_activations(self.buffer_tokens).to(self.storage_dtype)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.chunk)
        self._order = torch.randperm(self._storage.shape[0], generator=generator)
        self.pointer = 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` activations never served before, ``[batch_size, n_models, d_model]`` (float32)."""
        parts, need = [], batch_size
        while need:
            if self.pointer >= self._order.numel():
                self._draw_chunk()
            take = self._order[self.pointer : self.pointer + need]
            parts.append(self._storage[take])
            self.pointer += take.numel()
            need -= take.numel()
        return torch.cat(parts).float()

    def state_dict(self) -> dict:
        return {"chunk": self.chunk, "pointer": self.pointer, "chunk_start": self._chunk_start_state}

    def load_state_dict(self, state: dict) -> None:
        """Re-draw the chunk in progress from the source's saved position and continue at the pointer."""
        self.chunk = int(state["chunk"]) - 1
        if self.chunk < -1 or not state["chunk_start"]:
            self.chunk, self.pointer = -1, 0
            return
        self.source.load_state_dict(state["chunk_start"])
        self._draw_chunk()
        self.pointer = int(state["pointer"])


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as file:  # a file object: np.save would append ".npy" to a temp path
        np.save(file, array)


def write_disk_cache(source: ActivationSource, folder: str | Path, n_tokens: int, shard_tokens: int = 262_144,
                     storage_dtype: str = "bfloat16", metadata: dict | None = None) -> Path:
    """Harvest ``n_tokens`` activations once into ``folder`` as memory-mappable ``.npy`` shards.

    Resumable: finished shards (written atomically) are kept, and a rerun continues after them.
    bfloat16 is stored as its raw 16 bits (numpy has no bfloat16) and viewed back on read.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(n_tokens / shard_tokens)
    progress_file = folder / "progress.json"
    done = json.loads(progress_file.read_text()) if progress_file.exists() else {"shards": 0}
    if done["shards"]:
        source.load_state_dict(done["source_state"])
    for shard in tqdm(range(done["shards"], n_shards), desc="caching activations", initial=done["shards"],
                      total=n_shards):
        size = min(shard_tokens, n_tokens - shard * shard_tokens)
        acts = source.next_activations(size).to(DTYPES[storage_dtype])
        array = acts.view(torch.int16).numpy() if acts.dtype == torch.bfloat16 else acts.numpy()
        write_atomically(folder / f"shard_{shard:05d}.npy", lambda tmp, a=array: _save_npy(tmp, a))
        write_json(progress_file, {"shards": shard + 1, "source_state": source.state_dict()})
    n_models, d_model = np.load(folder / "shard_00000.npy", mmap_mode="r").shape[1:] if n_shards else (0, 0)
    write_json(folder / "metadata.json", {"n_tokens": n_tokens, "shard_tokens": shard_tokens, "n_shards": n_shards,
                                          "storage_dtype": storage_dtype, "n_models": int(n_models),
                                          "d_model": int(d_model), **(metadata or {})})
    return folder


class DiskCacheSource:
    """Reads activations from a cache written by ``write_disk_cache`` (memory-mapped, in order).

    Raises ``StopIteration`` when the cache is exhausted, unless ``epochs`` > 1 allows re-reading it.
    """

    def __init__(self, folder: str | Path, epochs: int = 1):
        self.folder = Path(folder)
        meta_file = self.folder / "metadata.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{self.folder} is not a finished activation cache (no metadata.json)")
        self.metadata = json.loads(meta_file.read_text())
        self.epochs = epochs
        self.shards = [np.load(self.folder / f"shard_{i:05d}.npy", mmap_mode="r")
                       for i in range(self.metadata["n_shards"])]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.position = 0

    def _read(self, start: int, stop: int) -> torch.Tensor:
        parts = []
        for index, shard in enumerate(self.shards):
            lo, hi = max(start, self.offsets[index]), min(stop, self.offsets[index + 1])
            if lo < hi:
                parts.append(torch.from_numpy(np.array(shard[lo - self.offsets[index] : hi - self.offsets[index]])))
        acts = torch.cat(parts)
        return acts.view(torch.bfloat16) if self.metadata["storage_dtype"] in ("bfloat16", "bf16") else acts

    def next_activations(self, n: int) -> torch.Tensor:
        total = int(self.offsets[-1])
        if self.position + n > total * self.epochs:
            raise StopIteration(f"activation cache {self.folder} ({total} tokens, epochs={self.epochs}) is exhausted")
        out, start = [], self.position
        while n:
            offset = start % total
            take = min(n, total - offset)
            out.append(self._read(offset, offset + take))
            start, n = start + take, n - take
        self.position = start
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
