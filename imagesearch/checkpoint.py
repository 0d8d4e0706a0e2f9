"""Run state on disk: atomic checkpoints, `weights_only` load, RNG states as tensors, metrics.jsonl.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that it loads with
`torch.load(path, weights_only=True)` (the default since torch 2.6). Nothing else may go in: no argparse
Namespace, no DictConfig, no numpy objects (torchvision's and MAE's `args` in checkpoints break there).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from imagesearch.distributed import get_rank, get_world_size, is_dist_initialized, unwrap_model
from imagesearch.io import atomic_write, atomic_write_text

C = TypeVar("C")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically: a temporary file in the same folder, then `os.replace`.

    A crash or a full disk mid-write leaves the previous file intact and no temporary file behind.

    Args:
        path: the checkpoint file, e.g. `runs/x/last.pt`; its folder is created when missing.
        state: a dict loadable with `torch.load(weights_only=True)`.

    Returns:
        The path written.
    """
    # fsync: a checkpoint that survives a power cut as an empty file would lose the run.
    return atomic_write(path, lambda tmp: torch.save(state, tmp), fsync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`.

    Args:
        path: a file written by `save_checkpoint`.
        map_location: where tensors go, "cpu" by default (the caller moves the model).

    Returns:
        The stored dict.

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the file is not a checkpoint `weights_only` can read; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load checkpoint with weights_only=True: {exc}") from exc
    if not isinstance(state, dict):
        raise RuntimeError(f"{path}: a checkpoint must hold a dict, got {type(state).__name__}")
    return state


M = TypeVar("M")


def load_model(
    path: str | Path,
    schema: type[C],
    build: Callable[[C], M],
    offline: Callable[[C], C] = lambda cfg: cfg,
    state_prefix: str = "",
    map_location: str | torch.device = "cpu",
) -> tuple[M, C]:
    """The one way a trained stage comes back from its checkpoint: config, build, weights, eval mode.

    The architecture comes from the checkpoint's stored `config["model"]` (read into `schema`, unknown keys an
    error); `offline` turns it into the config to build with, with no weights file or input checkpoint to read
    (the trained weights replace them); the state dict is then loaded strictly.

    Args:
        path: a checkpoint written by a training run (`last.pt`, `best.pt`).
        schema: the stage's model config dataclass.
        build: the stage's `build_model`.
        offline: the stored config -> the config to build with (e.g. `weights: none`).
        state_prefix: when some state keys start with it, keep only those, stripped (e.g. "embedder." of a
            model trained inside a loss wrapper, whose loss keys are dropped); "" keeps all.
        map_location: where tensors go before the caller moves the model.

    Returns:
        (the model in eval mode, its config as stored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: no usable model config, or weights that do not fit it; the message names the file.
    """
    from imagesearch.config import config_from_dict

    ckpt = load_checkpoint(path, map_location=map_location)
    stored = (ckpt.get("config") or {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if stored is None or "model" not in ckpt:
        raise ValueError(f"{path}: not a training checkpoint of this stage (no config['model'] and model)")
    cfg = config_from_dict(schema, stored, where=f"{path}: config['model']")
    model = build(offline(cfg))
    state = ckpt["model"]
    if state_prefix and any(k.startswith(state_prefix) for k in state):
        state = {k[len(state_prefix) :]: v for k, v in state.items() if k.startswith(state_prefix)}
    try:
        model.load_state_dict(state)  # type: ignore[attr-defined]
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the stored {schema.__name__}: {exc}") from exc
    return model.eval(), cfg  # type: ignore[attr-defined]


def capture_rng_state() -> dict[str, Any]:
    """The Python, numpy, torch (and CUDA) RNG states as tensors and numbers (`weights_only`-safe)."""
    py_version, py_internal, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python_version": int(py_version),
        # The 625 words are < 2**32, so they fit int64 exactly.
        "python_state": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_cached_gaussian": float(np_cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the RNG states taken by `capture_rng_state`.

    CUDA states are restored only when as many GPUs are visible as were saved (a resume on another
    machine still works, with fresh CUDA streams of randomness).
    """
    random.setstate(
        (state["python_version"], tuple(int(v) for v in state["python_state"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def gather_rng_states() -> list[dict[str, Any]] | None:
    """Every rank's `capture_rng_state()`, in rank order, on every rank; None when not distributed.

    A collective: all ranks must call it. Under DDP each rank draws its own augmentation and dropout
    randomness (seeded `seed + rank`), so an exact resume needs each rank's states, not only rank 0's.
    """
    if not is_dist_initialized() or get_world_size() == 1:
        return None
    states: list[Any] = [None] * get_world_size()
    dist.all_gather_object(states, capture_rng_state())
    return states


def git_sha(repo_dir: str | Path | None = None) -> str | None:
    """The git commit of the code (`git rev-parse HEAD`), or None outside a git checkout."""
    where = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or None


@dataclass
class RunProgress:
    """Where a run stands: what a training checkpoint stores besides the state dicts and the config."""

    epoch: int = 0  # epochs completed = the next epoch's 0-based index
    global_step: int = 0  # optimizer steps taken
    best_metric: float | None = None
    best_epoch: int = -1  # 0-based epoch of best_metric; -1 = none yet
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's metrics

    def update_best(self, value: float | None, epoch: int, mode: str) -> bool:
        """Take `value` (of epoch `epoch`) as the best when it is finite and improves: lower for "min",
        higher for "max". Returns whether it did."""
        if value is None or not math.isfinite(value):
            return False
        best = self.best_metric
        if best is not None and (value >= best if mode == "min" else value <= best):
            return False
        self.best_metric, self.best_epoch = float(value), epoch
        return True


TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "best_metric", "config", "rng")


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    progress: RunProgress,
    **fields: Any,
) -> dict[str, Any]:
    """The dict `fit` saves: the four state dicts, `progress`, the caller's `fields`, RNG states, torch version.

    Args:
        progress: epoch (epochs completed), global_step, best_metric, best_epoch, metrics.
        fields: more plain values, e.g. `config` (a plain dict), `git_sha`, `best_metric_name`, `mode`.
    """
    return {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        **dataclasses.asdict(progress),
        **fields,
        "rng": capture_rng_state(),
        "torch_version": str(torch.__version__),  # TorchVersion itself is not weights_only-safe
    }


def restore_training_state(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    source: str | Path = "<checkpoint>",
) -> RunProgress:
    """Load a `training_state` dict back into live objects, RNG states included; return its progress.

    Under DDP each rank restores its own RNG states (`rng_ranks`, saved by a DDP run); a rank the
    checkpoint has no states for (a run resumed on more processes) keeps its fresh `seed + rank` streams.
    A single process, or rank 0, restores `rng`, so a DDP checkpoint also resumes in one process.

    Raises:
        ValueError: keys are missing or a state dict does not fit; the message names `source`.
    """
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{source}: not a training checkpoint, missing keys {missing}")
    try:
        unwrap_model(model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{source}: checkpoint does not fit this model/optimizer: {exc}") from exc
    # An empty scaler state comes from a run without float16 scaling; an enabled scaler then starts fresh.
    if scaler.is_enabled() and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    rank = get_rank()
    rng_states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if rank < len(rng_states):
        restore_rng_state(rng_states[rank])
    return RunProgress(
        epoch=int(ckpt["epoch"]),
        global_step=int(ckpt["global_step"]),
        best_metric=ckpt["best_metric"],
        best_epoch=int(ckpt.get("best_epoch", -1)),
        metrics=dict(ckpt.get("metrics") or {}),
    )


def append_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Append one JSON line to `metrics.jsonl` (one write, flushed; `trim_metrics` repairs a torn tail)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(metrics) + "\n")


def trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume, drop `metrics.jsonl` lines of epochs the checkpoint does not hold.

    They come from a crash after the line was appended but before `last.pt` was replaced; the resumed
    run writes them again. Half-written lines are dropped too.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["epoch"]) < epochs_done:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a half-written line from a crash
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
