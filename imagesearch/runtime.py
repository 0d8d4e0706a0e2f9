"""What every run sets up before its first step: the device, seeds and data order, logs, progress bars, TensorBoard.

Everything here works in a plain single process; under `torchrun` (see `imagesearch.distributed`) the same
calls pick this rank's GPU, and only rank 0 logs to file, draws progress bars and writes TensorBoard events.

Logging, in one place so that every line is printed once:
- a script calls `setup_logging()` first: one console handler on the root logger;
- `engine.fit` wraps a run in `rank_zero_logging(out_dir / "train.log")`: the package's INFO records also go
  to the run's log file, and to the console only when nothing prints them already (a library caller that
  configured no logging);
- progress bars (`progress_bar`) are drawn on a terminal only, so a log captured to a file (`make demo >
  demo.log`) never holds their `\r` updates, and console lines go through `tqdm.write`, so a bar on the
  terminal is redrawn below a log line instead of being cut by it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from imagesearch.distributed import get_local_rank, get_rank, get_world_size, is_main_process

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_HANDLER_NAME = "imagesearch-console"
TENSORBOARD_MISSING = (
    "train.tensorboard=true but tensorboard is not installed (pip install 'imagesearch[tensorboard]'): "
    "no tb/ events are written"
)


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


def rank_device(spec: str) -> torch.device:
    """`resolve_device(spec)`, except that under DDP a CUDA device becomes this rank's `cuda:<LOCAL_RANK>`."""
    device = resolve_device(spec)
    if device.type != "cuda" or get_world_size() == 1:
        return device
    local = get_local_rank()
    if device.index is not None and device.index != local:
        logger.warning("train.device %r ignored under DDP: rank %d uses cuda:%d", spec, get_rank(), local)
    return torch.device("cuda", local)


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


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar drawn only when `enabled`, on rank 0, and on a terminal.

    `disable=None` is tqdm's own "off when the output is not a TTY": a run whose stderr goes to a file
    or a pipe logs its lines without the bar's carriage-return updates. (The split reader and the
    synthetic generator, which import no torch, pass `disable=None` to tqdm themselves.)

    Args:
        iterable: what to iterate (or None with `total=` for a manual bar).
        enabled: the caller's switch (e.g. `train.progress`).
        **kwargs: tqdm's arguments (`desc`, `total`, `unit`, `leave`, ...).
    """
    return tqdm(iterable, disable=None if enabled and is_main_process() else True, **kwargs)


class _ConsoleHandler(logging.StreamHandler):
    """A stderr handler that writes through `tqdm.write`, so that an active bar is redrawn below the line.

    Hand-written rather than `tqdm.contrib.logging.logging_redirect_tqdm` because that one swaps handlers
    only inside a with-block and adds a console handler even where a parent logger prints already (the
    cause of every engine line being printed twice). The stream is looked up at each record, as
    `logging.lastResort` does, so a handler outlives a replaced `sys.stderr` (tests capture it).
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


def _prints_to_console(log: logging.Logger) -> bool:
    """True when a record of `log` reaches a handler that writes to stdout or stderr."""
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr):
                return True
        current = current.parent if current.propagate else None
    return False


def _console_handler(fmt: str) -> logging.Handler:
    handler = _ConsoleHandler()
    handler.set_name(CONSOLE_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def setup_logging(level: int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """What a script calls first: log records of `level` and above printed once, to stderr.

    Adds one console handler to the root logger, unless the root prints already (a second call, or a
    caller's own `logging.basicConfig`).
    """
    root = logging.getLogger()
    root.setLevel(level)
    if not _prints_to_console(root):
        root.addHandler(_console_handler(fmt))


@contextlib.contextmanager
def rank_zero_logging(log_file: Path | None, package: str = "imagesearch") -> Iterator[logging.Logger]:
    """Log the package's INFO messages to `log_file` on rank 0 (WARNING elsewhere), and to the console.

    The console gets a handler only when no handler on the package logger or its parents prints already
    (a script's `setup_logging`), so that each line is printed once. The handlers are removed again on
    exit, so that repeated runs in one process (tests, sweeps) do not stack them or leak open files.
    """
    pkg = logging.getLogger(package)
    old_level = pkg.level
    pkg.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    handlers: list[logging.Handler] = []
    if not _prints_to_console(pkg):
        handlers.append(_console_handler(LOG_FORMAT))
    if log_file is not None and is_main_process():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(file_handler)
    for handler in handlers:
        pkg.addHandler(handler)
    try:
        yield pkg
    finally:
        for handler in handlers:
            pkg.removeHandler(handler)
            handler.close()
        pkg.setLevel(old_level)


def make_summary_writer(log_dir: Path) -> Any:
    """A TensorBoard `SummaryWriter` on rank 0; None elsewhere or when tensorboard is not installed.

    TensorBoard is an optional extra (`imagesearch[tensorboard]`): without it the run goes on, with one
    warning line that says how to install it.
    """
    if not is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning(TENSORBOARD_MISSING)
        return None
    return SummaryWriter(log_dir=str(log_dir))
