"""The per-process side of training, in one place, so that the engine can grow into DDP (torchrun).

Rank and world size, the device, seeds, the per-epoch data order, and rank-0-only logging and
TensorBoard. Every function works with or without `torch.distributed` initialised: a plain
single-process run is rank 0 of a world of size 1. Only the main process (rank 0) writes files, logs to
file, shows progress bars and writes TensorBoard events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


def is_dist_initialized() -> bool:
    """True when `torch.distributed` is available and a process group has been initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank; 0 when not distributed."""
    return dist.get_rank() if is_dist_initialized() else 0


def get_world_size() -> int:
    """The number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_dist_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the only process that writes checkpoints, logs and metrics."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op when not distributed), e.g. after rank 0 writes a checkpoint."""
    if is_dist_initialized() and get_world_size() > 1:
        dist.barrier()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside a `DistributedDataParallel` / `DataParallel` wrapper (or the model itself).

    Checkpoints always hold the bare module's state dict, so they load with or without DDP.
    """
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def all_reduce_mean(value: float, device: torch.device | None = None) -> float:
    """The mean of a float over all ranks (the value itself when not distributed)."""
    if not is_dist_initialized() or get_world_size() == 1:
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / get_world_size()


def move_to_device(obj: Any, device: torch.device) -> Any:
    """`obj` with every tensor (nested in lists, tuples, namedtuples and dicts) moved to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [move_to_device(v, device) for v in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else type(obj)(moved)  # namedtuples take *args
    return obj


def resolve_device(spec: str) -> torch.device:
    """Parse `train.device`: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:<i>"."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"train.device: {spec!r} is not a device (use auto, cpu, cuda or cuda:<i>)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device: {spec!r} asked for, but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"train.device: {spec!r} but only {torch.cuda.device_count()} GPU(s) visible")
    return device


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed `random`, numpy and torch (all GPUs); `deterministic` also makes cuDNN/cuBLAS deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first call to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def epoch_length(loader: Iterable, max_iters: int = 0) -> int | None:
    """Batches per epoch: `len(loader)` capped by `max_iters` (> 0); None when neither is known."""
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_iters or None
    return min(length, max_iters) if max_iters > 0 else length


def set_data_epoch(loader: Iterable, epoch: int, seed: int) -> None:
    """Make the epoch's data order a function of (seed, epoch) only, so that a resume replays it.

    Calls `set_epoch(epoch)` on the loader's sampler / batch sampler (DistributedSampler, P x K
    samplers) and re-seeds the DataLoader's `generator` (which drives shuffling and worker seeds).
    """
    seen: set[int] = set()
    for owner in (loader, getattr(loader, "batch_sampler", None)):
        for obj in (getattr(owner, "sampler", None), getattr(owner, "batch_sampler", None)):
            if obj is not None and id(obj) not in seen and callable(getattr(obj, "set_epoch", None)):
                seen.add(id(obj))
                obj.set_epoch(epoch)
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed * 1000 + epoch)


@contextlib.contextmanager
def rank_zero_logging(log_file: Path | None, package: str = "imagesearch") -> Iterator[logging.Logger]:
    """Log the package's INFO messages to the console and `log_file` on rank 0 (WARNING elsewhere).

    The handlers are removed again on exit, so that repeated runs in one process (tests, sweeps) do not
    stack them or leak open files.
    """
    pkg = logging.getLogger(package)
    old_level = pkg.level
    pkg.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    handlers: list[logging.Handler] = []
    if not logging.getLogger().handlers:  # a script that configured the root logger already prints
        handlers.append(logging.StreamHandler())
    if log_file is not None and is_main_process():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pkg.addHandler(handler)
    try:
        yield pkg
    finally:
        for handler in handlers:
            pkg.removeHandler(handler)
            handler.close()
        pkg.setLevel(old_level)


def make_summary_writer(log_dir: Path) -> Any:
    """A TensorBoard `SummaryWriter` on rank 0; None elsewhere or when tensorboard is not installed."""
    if not is_main_process():
        return None
    try:  # TensorBoard is optional: no tracker is a hard dependency
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        logger.warning("tensorboard unavailable (%s); no tb/ events", exc)
        return None
    return SummaryWriter(log_dir=str(log_dir))
