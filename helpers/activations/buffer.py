"""Paired activations: harvesting, scale-factor estimation, the shuffling buffer, the disk cache.

Data flow: a token source (``helpers.activations.data``) -> ``HarvestingSource`` (every model run on the same
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

from ..dtypes import canonical_dtype_name, parse_dtype
from ..files import read_json, write_atomically, write_json
from ..validation import positive_int
from .data import SourceExhaustedError, source_fingerprint
from .sites import harvest


class DiskCacheError(ValueError):
    """A disk cache that does not hold what it should: other settings, or shards that contradict its metadata."""


class ActivationSource(Protocol):
    """Anything that yields raw paired activations ``[n, n_models, d_model]`` and can rewind to a state."""

    def next_activations(self, n: int) -> torch.Tensor: ...
    def fingerprint(self) -> dict: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def model_label(name: str) -> str:
    """A model's Hub id, or for a local folder its name (so a moved checkout still recognises its caches)."""
    return Path(name).name if Path(name).is_dir() else name


def _model_label(model) -> str:
    return model_label(str(getattr(model.cfg, "model_name", type(model).__name__)))


class BatchHarvester:
    """``next_activations`` over a subclass's ``_harvest_batch()`` (one batch of fresh activations
    ``[n, n_models, d_model]``): the leftovers of a batch wait in ``_pending`` for the next request, so nothing
    harvested is wasted or served twice."""

    _pending: torch.Tensor

    def _harvest_batch(self) -> torch.Tensor:
        raise NotImplementedError

    def next_activations(self, n: int) -> torch.Tensor:
        """The next ``n`` raw activations, ``[n, n_models, d_model]``."""
        positive_int("n", n)
        chunks, have = [self._pending], self._pending.shape[0]
        while have < n:
            chunks.append(self._harvest_batch())
            have += chunks[-1].shape[0]
        everything = torch.cat([c for c in chunks if c.numel()])
        self._pending = everything[n:]
        return everything[:n]


class HarvestingSource(BatchHarvester):
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

    def fingerprint(self) -> dict:
        """What these activations are: models, site, width and the token source's own fingerprint."""
        return {"models": [_model_label(m) for m in self.models],
                "hook_point": self.hook_point, "d_model": int(self.models[0].cfg.d_model),
                "tokens": source_fingerprint(self.token_source)}

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
    return scale_factors_of(source.next_activations(n_activations))


def scale_factors_of(acts: torch.Tensor) -> torch.Tensor:
    """``sqrt(d_model) / mean ||x||`` per model of activations ``[n, n_models, d_model]``, ``[n_models]``."""
    return math.sqrt(acts.shape[-1]) / acts.float().norm(dim=-1).mean(0)


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
        self.source, self.seed, self.storage_dtype = source, seed, parse_dtype(storage_dtype, "storage_dtype")
        positive_int("seed", seed, minimum=0)
        if memory_gib is not None:
            if n_models is None or d_model is None:
                raise ValueError("memory_gib needs n_models and d_model to size the buffer")
            bytes_per = n_models * d_model * torch.finfo(self.storage_dtype).bits // 8
            buffer_tokens = int(memory_gib * 2**30 // bytes_per)
        self.buffer_tokens = positive_int("buffer_tokens", buffer_tokens)
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
        parts, need = [], positive_int("batch_size", batch_size)
        while need:
            if self.pointer >= self._order.numel():
                self._draw_chunk()
            take = self._order[self.pointer : self.pointer + need]
            parts.append(self._storage[take])
            self.pointer += take.numel()
            need -= take.numel()
        return torch.cat(parts).float()

    def fingerprint(self) -> dict:
        """What this buffer serves: its source's fingerprint and the settings that fix the order."""
        return {"source": source_fingerprint(self.source), "buffer_tokens": self.buffer_tokens, "seed": self.seed,
                "storage_dtype": str(self.storage_dtype).removeprefix("torch.")}

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


def _as_stored(fingerprint: dict) -> dict:
    """A fingerprint as it reads back from JSON (tuples become lists), so that stored and new ones compare."""
    return json.loads(json.dumps(fingerprint))


def _cache_fingerprint(source: ActivationSource, n_tokens: int, shard_tokens: int, storage_dtype: str) -> dict:
    return _as_stored({"source": source_fingerprint(source), "n_tokens": n_tokens, "shard_tokens": shard_tokens,
                       "storage_dtype": canonical_dtype_name(storage_dtype)})


def _differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two (nested) fingerprints, as ``key: stored -> wanted``."""
    found = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


def check_cache_folder(folder: str | Path) -> Path | None:
    """Whether ``folder`` can take a disk cache, checked before any work: the cache's record (``progress.json``
    of an unfinished one, ``metadata.json`` of a finished one) if it holds one, ``None`` if it is absent or empty
    (temporary files of a write that died count as empty); a file, or a folder holding anything else, is refused."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DiskCacheError(f"{folder} is a file; a disk cache is a folder")
    for name in ("progress.json", "metadata.json"):
        if (folder / name).is_file():
            return folder / name
    if folder.is_dir() and any(not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in folder.iterdir()):
        raise DiskCacheError(f"{folder} is not empty and holds no activation cache; refusing to write into it")
    return None


def write_disk_cache(source: ActivationSource, folder: str | Path, n_tokens: int, shard_tokens: int = 262_144,
                     storage_dtype: str = "bfloat16", metadata: dict | None = None) -> Path:
    """Harvest ``n_tokens`` activations once into ``folder`` as memory-mappable ``.npy`` shards.

    Resumable: finished shards (written atomically) are kept, and a rerun with the same settings continues
    after them. The cache carries a fingerprint (the source's models, hook point, width and token source,
    ``n_tokens``, ``shard_tokens``, ``storage_dtype``): a rerun with other settings, or a folder holding
    anything else, is refused with the differences listed, never mixed. bfloat16 is stored as its raw 16
    bits (numpy has no bfloat16) and viewed back on read.
    """
    positive_int("n_tokens", n_tokens)
    positive_int("shard_tokens", shard_tokens)
    folder = Path(folder)
    wanted = _cache_fingerprint(source, n_tokens, shard_tokens, storage_dtype)
    progress_file, meta_file = folder / "progress.json", folder / "metadata.json"
    recorded = check_cache_folder(folder)
    if recorded is not None:
        stored = read_json(recorded).get("fingerprint", {})
        if stored != wanted:
            raise DiskCacheError(f"{folder} is a cache of other activations; refusing to mix them. Differences "
                                 f"(cached -> requested): {_differences(stored, wanted)}. Use another folder.")
    if meta_file.exists():
        return folder  # complete, with these very settings
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(n_tokens / shard_tokens)
    if not progress_file.exists():  # claim the folder before the first shard, so a kill at any moment resumes
        write_json(progress_file, {"shards": 0, "fingerprint": wanted})
    done = read_json(progress_file)
    if done["shards"]:
        source.load_state_dict(done["source_state"])
    dtype = parse_dtype(storage_dtype, "storage_dtype")
    for shard in tqdm(range(done["shards"], n_shards), desc="caching activations", initial=done["shards"],
                      total=n_shards):
        size = min(shard_tokens, n_tokens - shard * shard_tokens)
        acts = source.next_activations(size).to(dtype)
        array = acts.view(torch.int16).numpy() if acts.dtype == torch.bfloat16 else acts.numpy()
        write_atomically(folder / f"shard_{shard:05d}.npy", lambda tmp, a=array: _save_npy(tmp, a))
        write_json(progress_file, {"shards": shard + 1, "source_state": source.state_dict(), "fingerprint": wanted})
    n_models, d_model = np.load(folder / "shard_00000.npy", mmap_mode="r").shape[1:]
    write_json(meta_file, {"n_tokens": n_tokens, "shard_tokens": shard_tokens, "n_shards": n_shards,
                           "storage_dtype": wanted["storage_dtype"], "n_models": int(n_models),
                           "d_model": int(d_model), "fingerprint": wanted, **(metadata or {})})
    return folder


NUMPY_DTYPES = {"bfloat16": np.int16, "float32": np.float32, "float16": np.float16}


class DiskCacheSource:
    """Reads activations from a cache written by ``write_disk_cache`` (memory-mapped, in order).

    Every shard is checked against the metadata (count, rows, width, dtype) when the cache is opened; with
    ``fingerprint`` (e.g. ``HarvestingSource.fingerprint()`` of the pair you mean to train on) the cache's
    own fingerprint must match. Raises ``SourceExhaustedError`` when the cache is exhausted, unless
    ``epochs`` > 1 allows re-reading it. ``shard=(rank, world_size)`` reads only that rank's contiguous
    ``1 / world_size`` of the cache (data-parallel training; ranks on several nodes share one cache folder).
    """

    def __init__(self, folder: str | Path, epochs: int = 1, fingerprint: dict | None = None,
                 shard: tuple[int, int] | None = None):
        self.folder = Path(folder)
        meta_file = self.folder / "metadata.json"
        if not meta_file.exists():
            state = "an unfinished cache (resume write_disk_cache)" if (self.folder / "progress.json").exists() else \
                "not an activation cache"
            raise FileNotFoundError(f"{self.folder} is {state}: no metadata.json")
        self.metadata = read_json(meta_file)
        cached = self.metadata.get("fingerprint", {})
        if fingerprint is not None and cached.get("source") != _as_stored(fingerprint):
            raise DiskCacheError(f"{self.folder} caches other activations than requested: "
                                 f"{_differences(cached.get('source', {}), _as_stored(fingerprint))}")
        self.epochs = positive_int("epochs", epochs)
        self.shards = [self._open_shard(i) for i in range(int(self.metadata["n_shards"]))]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        rank, world = shard or (0, 1)
        if positive_int("world_size", world) and not 0 <= rank < world:
            raise ValueError(f"shard rank must be in [0, {world}), got {rank}")
        self.shard, cached = shard, int(self.offsets[-1])
        self.start, self.stop = rank * cached // world, (rank + 1) * cached // world  # this rank's rows
        self.position = 0

    def _open_shard(self, index: int) -> np.ndarray:
        meta = self.metadata
        path = self.folder / f"shard_{index:05d}.npy"
        if not path.is_file():
            raise DiskCacheError(f"{path} is missing; the cache's metadata lists {meta['n_shards']} shards")
        try:
            shard = np.load(path, mmap_mode="r")
        except ValueError as error:
            raise DiskCacheError(f"{path} is not a readable .npy shard: {error}") from error
        rows = min(meta["shard_tokens"], meta["n_tokens"] - index * meta["shard_tokens"])
        expected = (rows, meta["n_models"], meta["d_model"])
        dtype = NUMPY_DTYPES[canonical_dtype_name(meta["storage_dtype"])]
        if shard.shape != expected or shard.dtype != dtype:
            raise DiskCacheError(f"{path} holds {shard.shape} {shard.dtype}, but the metadata says {expected} "
                                 f"{np.dtype(dtype)}; the cache is corrupt or was mixed with another")
        return shard

    def fingerprint(self) -> dict:
        source = self.metadata.get("fingerprint", {}).get("source", {})
        return source if self.shard is None else {**source, "shard": list(self.shard)}

    def _read(self, start: int, stop: int) -> torch.Tensor:
        parts = []
        for index, shard in enumerate(self.shards):
            lo, hi = max(start, self.offsets[index]), min(stop, self.offsets[index + 1])
            if lo < hi:
                parts.append(torch.from_numpy(np.array(shard[lo - self.offsets[index] : hi - self.offsets[index]])))
        acts = torch.cat(parts)
        return acts.view(torch.bfloat16) if canonical_dtype_name(self.metadata["storage_dtype"]) == "bfloat16" else acts

    def next_activations(self, n: int) -> torch.Tensor:
        positive_int("n", n)
        total = self.stop - self.start
        if self.position + n > total * self.epochs:
            raise SourceExhaustedError(f"activation cache {self.folder} ({total} tokens, epochs={self.epochs}) is "
                                       f"exhausted: {self.position} served, {n} more requested")
        out, start = [], self.position
        while n:
            offset = start % total
            take = min(n, total - offset)
            out.append(self._read(self.start + offset, self.start + offset + take))
            start, n = start + take, n - take
        self.position = start
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
