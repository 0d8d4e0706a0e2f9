"""The training engine every stage uses: `train_one_epoch` and `fit` (resume, checkpoints, eval, logs).

After torchvision `references/detection/engine.py` and MAE `engine_pretrain.py` (sum the loss dict, check
it is finite, step, log each term), plus nanoGPT / dinov2 around it: `config.yaml` before step 0,
`last.pt` / `best.pt`, `metrics.jsonl`, and an exact resume (states, RNGs and data order).

Multi-GPU: run any training script under `torchrun --nproc_per_node N`; `fit` does the rest (see its
docstring, `imagesearch.distributed` and `imagesearch.runtime`). A script needs no change, but `data.batch_size` is per GPU.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from imagesearch import checkpoint as ckpt_io
from imagesearch import distributed as dist_utils
from imagesearch import runtime
from imagesearch.checkpoint import RunProgress
from imagesearch.config import config_to_dict, write_config
from imagesearch.distributed import is_main_process
from imagesearch.optim import OptimConfig, build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainConfig:
    """Everything about a run that is not the model, the data or the optimizer."""

    out_dir: str = "runs/default"
    epochs: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1"
    amp: bool = False
    amp_dtype: str = "bfloat16"  # "bfloat16" | "float16" (GradScaler enabled only for float16 on CUDA)
    seed: int = 0
    deterministic: bool = False
    resume: bool = True  # resume from out_dir/last.pt when it exists
    log_every: int = 10
    max_iters_per_epoch: int = 0  # 0 = the whole loader
    eval_every: int = 1
    tensorboard: bool = True
    progress: bool = True  # tqdm bars (drawn on a terminal only, never into a captured log)
    find_unused_parameters: bool = False  # DDP: for models whose forward leaves some trainable params unused
    dist_timeout_min: float = 60.0  # DDP: longest wait in a collective (other ranks wait while rank 0 evaluates)


def default_forward(model: nn.Module, batch: Any, device: torch.device) -> dict[str, Tensor]:
    """Move a batch to `device` (tensors nested in tuples/lists/dicts) and call the model on it.

    A tuple/list batch is unpacked as positional arguments (`model(images, targets)`), a dict as keyword
    arguments, a single tensor is passed as is. The model, in train mode, returns its loss dict.
    """
    batch = runtime.move_to_device(batch, device)
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


@dataclass
class TrainParts:
    """What a stage hands to `fit`: a model, its training data, and how to get losses and metrics.

    Args:
        model: returns a loss dict through `forward`.
        train_loader: an iterable of batches (a DataLoader with a seeded `generator`, ideally).
        forward: `(model, batch, device) -> {"loss_cls": t, ...}` of scalar tensors.
        evaluate: `(model, epoch) -> {"val/ap50": 0.9, ...}`; run under `torch.no_grad()` in eval mode.
        params: parameters or param-group dicts for the optimizer; default all with `requires_grad`.
        log_visuals: `(writer, epoch) -> None`, called on rank 0 after each evaluation with the run's
            TensorBoard `SummaryWriter` (only when one is open): pictures and other records that are
            not the scalars `evaluate` returns, so that no hook opens a writer of its own.
        config: the resolved run config `fit` stores in config.yaml and in every checkpoint (a stage may
            resolve its input config, e.g. make an inherited architecture explicit).
        best_metric, mode: the metric that picks best.pt and whether higher ("max") or lower is better.
        after_fit: `(FitResult) -> dict`, run once training is done (e.g. the classifier's category
            merging, the detector's trunk file); its result is `FitResult.extra`.

    Every stage's `build_parts(run_config)` returns one of these, and its `run` is `train_stage` of it.
    """

    model: nn.Module
    train_loader: Iterable
    forward: Callable[[nn.Module, Any, torch.device], dict[str, Tensor]] = default_forward
    evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None
    params: list[nn.Parameter] | list[dict] | None = None
    log_visuals: Callable[[Any, int], None] | None = None
    config: Any = None
    best_metric: str = "train/loss"
    mode: str = "min"
    after_fit: Callable[[FitResult], dict[str, Any]] | None = None


@dataclass
class FitResult:
    """What `fit` returns. Epochs are 0-based indices; `best_epoch` is -1 when no metric was seen."""

    best_metric: float | None
    best_metric_name: str
    best_epoch: int
    last_metrics: dict[str, float]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics_path: Path
    config_path: Path
    epochs_trained: int  # in this call (0 when a resume found the run complete)
    extra: dict[str, Any] = field(default_factory=dict)  # what `TrainParts.after_fit` returned


def train_stage(parts: TrainParts) -> FitResult:
    """A stage's whole training run: `fit` with the parts' run config (its `optim` and `train` sections) and
    best metric, then `parts.after_fit`."""
    cfg = parts.config
    result = fit(parts, cfg.optim, cfg.train, cfg, best_metric=parts.best_metric, mode=parts.mode)
    if parts.after_fit is not None and is_main_process():
        result.extra = parts.after_fit(result)
    return result


def _loss_values(loss_dict: Any, epoch: int, step: int) -> list[float]:
    if not isinstance(loss_dict, Mapping) or not loss_dict:
        raise TypeError(f"forward must return a non-empty dict of loss tensors, got {type(loss_dict).__name__}")
    for name, value in loss_dict.items():
        if not isinstance(value, Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss term {name!r} must be a scalar tensor, got {shape}")
    # One device->host copy for all terms: a single sync point per step (logging needs the values anyway).
    values = torch.stack([v.detach().float() for v in loss_dict.values()]).tolist()
    if not all(math.isfinite(v) for v in [*values, sum(values)]):
        terms = ", ".join(f"{k}={v}" for k, v in zip(loss_dict, values, strict=True))
        raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}: {terms}")
    return values


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    forward: Callable[[nn.Module, Any, torch.device], dict[str, Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    epoch: int,
    *,
    amp: bool = False,
    amp_dtype: str | torch.dtype = "bfloat16",
    grad_clip: float = 0.0,
    log_every: int = 10,
    max_iters: int = 0,
    writer: Any = None,
    global_step: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Train one epoch; the scheduler is stepped after every optimizer step.

    Args:
        forward: `(model, batch, device) -> {term: scalar tensor}`; the terms are summed into the loss.
        scaler: a `torch.amp.GradScaler` (disabled unless float16 on CUDA; disabled it is a no-op).
        epoch: the 0-based epoch index, for messages and the progress bar.
        max_iters: stop after this many batches (0 = the whole loader).
        writer: a TensorBoard `SummaryWriter` or None; gets `train/loss`, `train/<term>`, `train/lr` on the
            first and every `log_every`-th step (under DDP the logged losses are the means over ranks).
        global_step: optimizer steps taken before this epoch (the x axis of the logs).

    Returns:
        `train/loss` and `train/<term>` averaged over this process's steps of the epoch, `train/lr` (the
        last step's LR), `train/iters` (steps taken) and, when clipping, `train/grad_norm` (mean norm
        before clipping).

    Raises:
        FloatingPointError: a non-finite loss, naming each term's value, the epoch and the step.
    """
    dtype = AMP_DTYPES[amp_dtype] if isinstance(amp_dtype, str) else amp_dtype
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = runtime.epoch_length(loader, max_iters)
    batches = itertools.islice(loader, max_iters) if max_iters > 0 else loader
    bar = runtime.progress_bar(batches, enabled=progress, total=total, desc=f"epoch {epoch}", leave=False)
    sums: dict[str, float] = defaultdict(float)
    n, lr = 0, optimizer.param_groups[0]["lr"]
    model.train()
    for batch in bar:
        step, lr = global_step + n, optimizer.param_groups[0]["lr"]
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss_dict = forward(model, batch, device)
        values = _loss_values(loss_dict, epoch, step)  # raises before any weight is touched
        loss = sum(v.float() for v in loss_dict.values())
        optimizer.zero_grad(set_to_none=True)  # at the start, so the last step's grads stay inspectable
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            sums["train/grad_norm"] += float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n += 1
        terms = {f"train/{k}": v for k, v in zip(loss_dict, values, strict=False)} | {"train/loss": sum(values)}
        for key, value in terms.items():
            sums[key] += value
        bar.set_postfix(loss=f"{sums['train/loss'] / n:.4f}", lr=f"{lr:.3g}", refresh=False)
        if log_every > 0 and (n % log_every == 0 or n == 1):
            terms = dist_utils.all_reduce_means(terms, device)  # every rank logs at the same steps
            logger.info("epoch %d iter %d/%s step %d lr %.4g %s", epoch, n, total or "?", step, lr,
                        " ".join(f"{k[6:]}={v:.4f}" for k, v in terms.items()))  # fmt: skip
            if writer is not None:
                for key, value in {**terms, "train/lr": lr}.items():
                    writer.add_scalar(key, value, step)
    bar.close()
    return {k: v / max(n, 1) for k, v in sums.items()} | {"train/lr": float(lr), "train/iters": float(n)}


@dataclass
class _Run:
    """The live objects of one `fit` call and its progress (epochs completed, best so far)."""

    model: nn.Module  # wrapped in DistributedDataParallel when the world size is > 1
    loader: Iterable  # the train loader, this rank's share of it under DDP
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    out_dir: Path
    config: dict[str, Any]
    git_sha: str | None
    writer: Any = None
    progress: RunProgress = field(default_factory=RunProgress)


def fit(
    parts: TrainParts,
    optim: OptimConfig,
    train: TrainConfig,
    config: Any,
    best_metric: str = "val/loss",
    mode: str = "min",
) -> FitResult:
    """Train `parts.model` for `train.epochs` epochs, resuming from `<out_dir>/last.pt` when it exists.

    Writes under `train.out_dir` (rank 0 only): `config.yaml` (before step 0), `train.log`, `tb/`
    (TensorBoard), `metrics.jsonl` (one line per epoch), `last.pt` (every epoch) and `best.pt` (when
    `best_metric` improves: lower for mode "min", higher for "max"). Checkpoints store `epoch` as the
    number of epochs completed; a resume that finds `epoch >= train.epochs` returns without training.

    Under `torchrun --nproc_per_node N` (WORLD_SIZE > 1) the same call trains with DDP, one process per
    GPU (at world size 1 none of this happens): it joins the process group (NCCL on CUDA, gloo on CPU;
    left at the end when `fit` made it), runs rank r on `cuda:<LOCAL_RANK>` seeded `seed + r`, gives
    each rank a disjoint share of every epoch (`shard_loader`: `batch_size` is per GPU, the global batch
    N times it), wraps the model in DDP for `forward` (`evaluate` and checkpoints get the bare model,
    so checkpoints keep the single-process layout), averages the logged losses over ranks, evaluates on
    rank 0 while the others wait (up to `train.dist_timeout_min`), and resumes every rank from `last.pt`.

    Args:
        parts: model, train loader, forward and evaluate hooks, optional parameter groups.
        optim: optimizer, LR schedule (stepped per iteration) and gradient clipping.
        train: run settings (out_dir, epochs, device, AMP, seed, resume, logging).
        config: the whole resolved config (dataclass or dict), written to config.yaml and checkpoints.
        best_metric: key of the epoch metrics that selects best.pt, e.g. "val/recall@1" or "train/loss".
        mode: "min" or "max".

    Returns:
        A `FitResult` with the best value and epoch, the last epoch's metrics and the output paths.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"fit: mode must be 'min' or 'max', got {mode!r}")
    if train.amp_dtype not in AMP_DTYPES:
        raise ValueError(f"train.amp_dtype: {train.amp_dtype!r}, expected one of {sorted(AMP_DTYPES)}")
    backend = "nccl" if runtime.resolve_device(train.device).type == "cuda" else "gloo"
    owns_group = dist_utils.init_distributed(backend, train.dist_timeout_min)
    try:
        return _fit(parts, optim, train, config, best_metric, mode)
    finally:
        if owns_group:
            dist_utils.destroy_distributed()


def _fit(
    parts: TrainParts, optim: OptimConfig, train: TrainConfig, config: Any, best_metric: str, mode: str
) -> FitResult:
    device, out_dir = runtime.rank_device(train.device), Path(train.out_dir)
    runtime.seed_everything(train.seed + dist_utils.get_rank(), train.deterministic)  # per-rank streams for augmentation
    if is_main_process():
        write_config(config, out_dir)
    with runtime.rank_zero_logging(out_dir / "train.log"):
        run = _prepare(parts, optim, train, config, device, out_dir)
        start = run.progress.epoch
        if start >= train.epochs:
            logger.info("%s: already complete (%d/%d epochs); nothing to train", out_dir, start, train.epochs)
            return _result(run, best_metric, epochs_trained=0)
        if parts.evaluate is None and not best_metric.startswith("train/"):
            logger.warning("no evaluate hook: best.pt follows %r, which will never be reported", best_metric)
        run.writer = runtime.make_summary_writer(out_dir / "tb") if train.tensorboard else None
        try:
            for epoch in range(start, train.epochs):
                _fit_epoch(run, parts, optim, train, epoch, best_metric, mode)
        finally:
            if run.writer is not None:
                run.writer.close()
        return _result(run, best_metric, epochs_trained=train.epochs - start)


def _prepare(
    parts: TrainParts, optim: OptimConfig, train: TrainConfig, config: Any, device: torch.device, out_dir: Path
) -> _Run:
    model = parts.model.to(device)
    params = parts.params if parts.params is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, optim)
    loader = dist_utils.shard_loader(parts.train_loader)  # the loader itself at world size 1
    iters = runtime.epoch_length(loader, train.max_iters_per_epoch)
    if not iters:
        raise ValueError("the train loader is empty or has no len(); set train.max_iters_per_epoch")
    scheduler = build_scheduler(optimizer, optim, iters, train.epochs)
    scaling = train.amp and train.amp_dtype == "float16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=scaling)
    progress, last = RunProgress(), out_dir / "last.pt"
    if train.resume and last.is_file():  # every rank loads it: the states are the same on all of them
        progress = ckpt_io.restore_training_state(ckpt_io.load_checkpoint(last), model, optimizer, scheduler, scaler, last)
        logger.info("resumed from %s: %d epochs done, step %d, best %s", last, progress.epoch,
                    progress.global_step, progress.best_metric)  # fmt: skip
    if is_main_process():  # lines of epochs not in the checkpoint (or of an old run when not resuming) go
        ckpt_io.trim_metrics(out_dir / "metrics.jsonl", progress.epoch)
    model = dist_utils.wrap_ddp(model, device, train.find_unused_parameters)
    world = dist_utils.get_world_size()
    logger.info("training on %s%s for %d epochs x %d iters, out_dir %s", device,
                f" (DDP, {world} processes)" if world > 1 else "", train.epochs, iters, out_dir)  # fmt: skip
    run = _Run(model, loader, optimizer, scheduler, scaler, device, out_dir, config_to_dict(config), ckpt_io.git_sha())
    run.progress = progress
    return run


def _fit_epoch(
    run: _Run, parts: TrainParts, optim: OptimConfig, train: TrainConfig, epoch: int, best_metric: str, mode: str
) -> None:
    start, progress = time.time(), run.progress
    runtime.set_data_epoch(run.loader, epoch, train.seed)
    stats = train_one_epoch(
        run.model, run.loader, parts.forward, run.optimizer, run.scheduler, run.scaler, run.device, epoch,
        amp=train.amp, amp_dtype=train.amp_dtype, grad_clip=optim.grad_clip, log_every=train.log_every,
        max_iters=train.max_iters_per_epoch, writer=run.writer, global_step=progress.global_step,
        progress=train.progress,
    )  # fmt: skip
    progress.global_step += int(stats["train/iters"])
    stats = dist_utils.all_reduce_means(stats, run.device)
    val: dict[str, float] = {}
    last_epoch = epoch + 1 == train.epochs
    if parts.evaluate is not None and (last_epoch or (train.eval_every > 0 and (epoch + 1) % train.eval_every == 0)):
        if is_main_process():  # the bare model: no DDP collective that the idle ranks would not join
            run.model.eval()
            with torch.no_grad():
                val = {k: float(v) for k, v in parts.evaluate(dist_utils.unwrap_model(run.model), epoch).items()}
        val = dist_utils.broadcast_object(val)  # the other ranks wait here while rank 0 evaluates
        if best_metric not in val and best_metric not in stats:
            raise ValueError(f"best_metric {best_metric!r} is not among the metrics {sorted({**stats, **val})}")
    metrics = {"epoch": epoch, **stats, **val, "lr": stats["train/lr"], "global_step": progress.global_step}
    metrics["time"] = time.time() - start
    improved = progress.update_best(metrics.get(best_metric), epoch, mode)
    progress.epoch, progress.metrics = epoch + 1, metrics
    if run.writer is not None:
        for key, v in val.items():
            run.writer.add_scalar(key, v, progress.global_step)
        if val and parts.log_visuals is not None:
            parts.log_visuals(run.writer, epoch)
        run.writer.flush()
    rng_ranks = ckpt_io.gather_rng_states()  # a collective: every rank, before rank 0 saves
    if is_main_process():
        ckpt_io.append_metrics(run.out_dir / "metrics.jsonl", metrics)
        state = ckpt_io.training_state(
            run.model, run.optimizer, run.scheduler, run.scaler, progress,
            best_metric_name=best_metric, mode=mode, config=run.config, git_sha=run.git_sha,
            **({"rng_ranks": rng_ranks} if rng_ranks else {}),
        )  # fmt: skip
        ckpt_io.save_checkpoint(run.out_dir / "last.pt", state)
        if improved:
            ckpt_io.save_checkpoint(run.out_dir / "best.pt", state)
    dist_utils.barrier()
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith(("train/loss", "val/")))
    logger.info("epoch %d done in %.1fs: %s%s", epoch, metrics["time"], shown, " (best)" if improved else "")


def _result(run: _Run, best_metric: str, epochs_trained: int) -> FitResult:
    best = run.out_dir / "best.pt"
    return FitResult(
        best_metric=run.progress.best_metric, best_metric_name=best_metric, best_epoch=run.progress.best_epoch,
        last_metrics=run.progress.metrics, out_dir=run.out_dir, last_checkpoint=run.out_dir / "last.pt",
        best_checkpoint=best if best.is_file() else None, metrics_path=run.out_dir / "metrics.jsonl",
        config_path=run.out_dir / "config.yaml", epochs_trained=epochs_trained,
    )  # fmt: skip
