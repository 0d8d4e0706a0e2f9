"""DistributedDataParallel and nothing else: ranks, the process group, the DDP wrapper, collectives, sharded data.

Every function works with or without `torch.distributed` initialised: a plain single-process run is
rank 0 of a world of size 1, and then nothing here changes what it does. Under `torchrun
--nproc_per_node N` (one process per GPU), `engine.fit` calls `init_distributed` (reads RANK /
WORLD_SIZE / LOCAL_RANK), puts each process on `cuda:<LOCAL_RANK>` (`runtime.rank_device`), wraps the
model (`wrap_ddp`) and gives each rank a disjoint share of every epoch (`shard_loader`). Only the main
process (rank 0) writes files, logs to file, shows progress bars and writes TensorBoard events (see
`imagesearch.runtime`).
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler

logger = logging.getLogger(__name__)


def is_dist_initialized() -> bool:
    """True when `torch.distributed` is available and a process group has been initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank; 0 when not distributed.

    Without a process group, a process that torchrun started (WORLD_SIZE > 1 in its environment) still
    reports its RANK: so code that runs after `fit` has destroyed the group (a script's summary, a
    final evaluation) keeps writing on rank 0 only.
    """
    if is_dist_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0) if _env_int("WORLD_SIZE", 1) > 1 else 0


def get_world_size() -> int:
    """The number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_dist_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the only process that writes checkpoints, logs and metrics."""
    return get_rank() == 0


def get_local_rank() -> int:
    """This process's rank on its machine (torchrun's LOCAL_RANK, which picks its GPU); 0 when not distributed."""
    return _env_int("LOCAL_RANK", get_rank()) if get_world_size() > 1 else 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def barrier() -> None:
    """Wait for every rank (a no-op when not distributed), e.g. after rank 0 writes a checkpoint."""
    if is_dist_initialized() and get_world_size() > 1:
        if dist.get_backend() == "nccl":  # name the GPU, or NCCL guesses one and warns
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def init_distributed(backend: str | None = None, timeout_min: float | None = None) -> bool:
    """Join the process group that torchrun describes in the environment; a no-op at world size 1.

    Reads WORLD_SIZE, RANK and LOCAL_RANK (MASTER_ADDR / MASTER_PORT through `env://`). With NCCL the
    process is first bound to `cuda:<LOCAL_RANK>`, so that each rank drives its own GPU.

    Args:
        backend: "nccl" or "gloo"; None = NCCL when CUDA is available, else gloo (CPU).
        timeout_min: how long a collective may wait (minutes); None = torch's default. Ranks other than 0
            wait in one while rank 0 evaluates, so it must exceed the longest evaluation.

    Returns:
        True when this call created the process group (its caller should `destroy_distributed` it);
        False at world size 1 or when a group already exists.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if is_dist_initialized() or world_size <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
    if "RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={world_size} but RANK is not set: launch with torchrun --nproc_per_node N")
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible")
        torch.cuda.set_device(local_rank)
    kwargs = {"timeout": timedelta(minutes=timeout_min)} if timeout_min else {}
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    logger.info("process group: backend %s, rank %d of %d, local rank %d", backend, rank, world_size, local_rank)
    return True


def destroy_distributed() -> None:
    """Tear down the default process group (a no-op when there is none)."""
    if is_dist_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """`model` in `DistributedDataParallel` when the world size is > 1, else `model` itself.

    DDP broadcasts rank 0's parameters and buffers at construction and averages gradients over ranks in
    `backward`, so every rank takes the same optimizer step. Only a forward through the wrapper is
    synchronised: a stage's `forward` hook must call `model(...)`, not a submodule.
    """
    if get_world_size() == 1:
        return model
    device_ids = None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside a `DistributedDataParallel` / `DataParallel` wrapper (or the model itself).

    Checkpoints always hold the bare module's state dict, so they load with or without DDP.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def all_reduce_means(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Each value's mean over all ranks, in one collective (`values` itself when not distributed).

    Every rank must pass the same keys in the same order.
    """
    if not is_dist_initialized() or get_world_size() == 1 or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    means = (tensor / get_world_size()).tolist()
    return dict(zip(values, means, strict=True))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` (picklable) on every rank; `obj` itself when not distributed."""
    if not is_dist_initialized() or get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardSampler(Sampler):
    """This rank's share of another sampler's (or batch sampler's) epoch: every `world_size`-th element from `rank`.

    The wrapped sampler keeps all its logic (class balance, budget, P x K batches, triplets); each epoch
    its whole output is drawn, padded by repeating its first elements up to a multiple of `world_size`
    (as `DistributedSampler` does, so that every rank takes the same number of steps and DDP never waits
    on a rank that ran out), and rank r keeps elements r, r + world_size, ... The shares are disjoint
    and cover the epoch only when every rank draws the same sequence: the wrapped sampler must be
    seeded by (seed, epoch), as every sampler in this project is, not by the per-rank global RNG.

    Args:
        sampler: any iterable with `len`; its elements are indices (a sampler) or index lists (a
            batch sampler). `set_epoch` is forwarded to it and to its own `.sampler`.
        rank: this process's rank, 0 <= rank < world_size.
        world_size: the number of ranks.
    """

    def __init__(self, sampler: Iterable, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardSampler: rank {rank} outside 0..{world_size - 1}")
        # `inner`, not `sampler`: `set_data_epoch` looks for `.sampler` and would set the epoch twice.
        self.inner, self.rank, self.world_size = sampler, rank, world_size

    def __len__(self) -> int:
        return math.ceil(len(self.inner) / self.world_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        items = list(self.inner)
        if items and len(items) % self.world_size:
            pad = self.world_size - len(items) % self.world_size
            items += (items * math.ceil(pad / len(items)))[:pad]
        return iter(items[self.rank :: self.world_size])

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped sampler (and to the sampler inside a batch sampler)."""
        targets = {id(o): o for o in (self.inner, getattr(self.inner, "sampler", None)) if o is not None}
        for obj in targets.values():
            if callable(getattr(obj, "set_epoch", None)):
                obj.set_epoch(epoch)


# DataLoader arguments that `shard_loader` sets itself; the others are copied from the loader.
_SHARD_SETS = ("self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last")


def _is_sharded(loader: DataLoader) -> bool:
    batch_sampler = loader.batch_sampler
    owners = (loader.sampler, batch_sampler, getattr(batch_sampler, "sampler", None))
    return any(isinstance(o, (ShardSampler, DistributedSampler)) for o in owners)


def shard_loader(loader: Iterable, rank: int | None = None, world_size: int | None = None) -> Iterable:
    """The train loader with each rank's disjoint 1/world_size share of every epoch; `loader` itself at world size 1.

    Stages build their own DataLoaders, some with custom samplers or batch samplers; this rebuilds the
    DataLoader around a `ShardSampler` of whichever draws the batches:
    - a `batch_sampler` (P x K batches): rank r keeps batches r, r + W, ... of the epoch;
    - otherwise the `sampler` (sequential, shuffled, class-balanced, triplets): rank r keeps elements
      r, r + W, ..., batched per rank with the loader's `batch_size` and `drop_last`. `batch_size` is
      thus per process: step t of the W ranks together sees exactly batch t of a single process with
      batch size W * batch_size (so, with gradients averaged by DDP, the same update for a loss that is
      a mean over the batch).
    The other DataLoader settings (workers, collate_fn, generator, pin_memory, ...) are kept; the
    generator is shared, so `set_data_epoch` re-seeds shuffling identically on every rank. A loader that
    is already sharded (a `DistributedSampler` or a `ShardSampler` inside) is returned as it is.

    Args:
        loader: a map-style `torch.utils.data.DataLoader` (or anything at world size 1).
        rank, world_size: default the current process group's.

    Returns:
        A new DataLoader (world size > 1), or `loader` untouched.

    Raises:
        TypeError: at world size > 1, `loader` is not a DataLoader, or iterates an IterableDataset.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if world_size == 1:
        return loader
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        raise TypeError(
            f"shard_loader: under DDP the train loader must be a DataLoader over a map-style dataset (to split "
            f"its epochs over {world_size} ranks), got {type(loader).__name__}"
        )
    if _is_sharded(loader):
        return loader
    params = inspect.signature(DataLoader.__init__).parameters
    kwargs = {name: getattr(loader, name) for name in params if name not in _SHARD_SETS and hasattr(loader, name)}
    if loader.batch_size is None and loader.batch_sampler is not None:  # a custom batch sampler
        return DataLoader(loader.dataset, batch_sampler=ShardSampler(loader.batch_sampler, rank, world_size), **kwargs)
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) and sampler.generator is None:
        # Drawn from the global RNG, which is seeded per rank: every rank would shuffle differently.
        kwargs["generator"] = kwargs.get("generator") or torch.Generator().manual_seed(0)
        sampler = copy.copy(sampler)
        sampler.generator = kwargs["generator"]
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=ShardSampler(sampler, rank, world_size),
        drop_last=loader.drop_last,
        **kwargs,
    )
