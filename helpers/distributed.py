"""Data-parallel training on ``torch.distributed``: the global batch and the collectives it needs.

Each rank trains on its own slice of the global batch. For a run at world size N to equal a run at world
size 1 on the same global batches, every quantity that depends on the whole batch is computed over all
ranks while the trainer holds ``global_batch()``:

- gradients are averaged (every loss is a mean over the rank's tokens, and ranks hold equal slices);
- BatchTopK keeps the ``k * global_batch`` largest scores of the global batch (``global_top_values``
  all-gathers each rank's candidates) and learns its inference threshold from them;
- dead-latent counters see a latent fire on any rank and advance by the global batch;
- the aux-k loss is normalised by the residual's variance over the global batch.

Outside ``global_batch()`` (evaluation, notebooks, one process) every helper here is the identity, so a
crosscoder used on one rank after training never waits on the others. ``init_from_env`` sets up the
process group that ``torchrun`` describes in the environment (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

_in_global_batch = False


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def init_from_env(backend: str | None = None, timeout_minutes: float = 30.0) -> torch.device:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``) and return this rank's device: ``cuda:LOCAL_RANK`` with NCCL when
    GPUs are present, else the CPU with gloo. Without those variables (a plain ``python`` run) it does
    nothing and returns the default device of a single process."""
    if "WORLD_SIZE" not in os.environ:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes),
                                device_id=device if device.type == "cuda" else None)
    return device


def end_rank() -> None:
    """Finish a ``torchrun`` rank: every rank meets, the process group is torn down, and the process exits at once.

    Exiting through the interpreter's normal teardown (C++ static destructors) aborted a rank after its work was
    done ("terminate called without an active exception", no Python frame on the stack) in about 1 two-rank CPU job
    in 10 on a busy 2-core machine, failing a job whose checkpoints were already written (0 in 36 with this);
    ``os._exit`` skips that teardown, so the streams are flushed first. Outside ``torchrun`` it does nothing."""
    if "WORLD_SIZE" not in os.environ:
        return
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextlib.contextmanager
def global_batch() -> Iterator[None]:
    """Within this block batch statistics are taken over every rank (a no-op at world size 1)."""
    global _in_global_batch
    previous, _in_global_batch = _in_global_batch, rank_and_world()[1] > 1
    try:
        yield
    finally:
        _in_global_batch = previous


def batch_is_global() -> bool:
    """Whether batch statistics are currently shared across ranks (inside ``global_batch()``, world > 1)."""
    return _in_global_batch


def batch_world_size() -> int:
    """How many ranks share the current batch: the world size inside ``global_batch()``, else 1."""
    return rank_and_world()[1] if _in_global_batch else 1


def sum_over_batch(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks sharing the batch (a new tensor; the identity outside)."""
    if not _in_global_batch:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total


def any_over_batch(mask: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of a bool tensor over the ranks sharing the batch."""
    if not _in_global_batch:
        return mask
    as_int = mask.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
    return as_int.bool()


def global_top_values(local_top: torch.Tensor, n_keep: int) -> torch.Tensor:
    """The ``n_keep`` largest values of the global batch, ``[n_keep]``, from each rank's own ``n_keep``
    largest ``local_top`` (every rank must pass as many, which equal slices guarantee)."""
    if not _in_global_batch:
        return local_top.topk(min(n_keep, local_top.numel()), sorted=False).values
    gathered = [torch.empty_like(local_top) for _ in range(rank_and_world()[1])]
    dist.all_gather(gathered, local_top.contiguous())
    everything = torch.cat(gathered)
    return everything.topk(min(n_keep, everything.numel()), sorted=False).values


def centred_energy(values: torch.Tensor) -> torch.Tensor:
    """Mean over the (global) batch of ``||v_b - mean_b(v)||^2`` for ``values [batch, ...]``: the aux-k
    loss's normaliser. With one rank it is computed directly, otherwise from all-reduced moments."""
    if not _in_global_batch:
        return (values - values.mean(0)).pow(2).flatten(1).sum(-1).mean()
    moments = torch.cat([values.sum(0).flatten(), values.pow(2).sum().view(1),
                         torch.tensor([values.shape[0]], dtype=values.dtype, device=values.device)])
    dist.all_reduce(moments)
    count = moments[-1]
    mean = moments[:-2] / count
    return moments[-2] / count - mean.pow(2).sum()


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over all ranks (one all-reduce per tensor)."""
    _, world = rank_and_world()
    if world == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world)


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (the start of a data-parallel run)."""
    if rank_and_world()[1] == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` at world size 1."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if rank_and_world()[1] == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
