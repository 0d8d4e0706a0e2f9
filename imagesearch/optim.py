"""The optimizer and its per-iteration LR schedule, as every stage's `optim` config section builds them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = ["OPTIMIZERS", "SCHEDULES", "OptimConfig", "build_optimizer", "build_scheduler"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class OptimConfig:
    """Optimizer and per-iteration LR schedule (linear warm-up, then cosine / step / constant)."""

    name: str = "sgd"  # "sgd" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD momentum; AdamW's beta1 is betas[0]
    weight_decay: float = 5e-4
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW only
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    milestones: list[int] = field(default_factory=list)  # epochs, for "step"
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 0.0  # max grad norm, 0 = off



def build_optimizer(params: Iterable, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over `params` (tensors or param-group dicts)."""
    params = list(params)
    if not params:
        raise ValueError("build_optimizer: no parameters to optimise (all frozen?)")
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name: unknown optimizer {cfg.name!r}, expected one of {OPTIMIZERS}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, iters_per_epoch: int, epochs: int
) -> LRScheduler:
    """A per-iteration LR schedule: linear warm-up from `warmup_factor` to 1, times the main schedule.

    Iteration `it` (0-based, the value of `scheduler.last_epoch`) gets `lr * warm(it) * main(it)`, where
    `warm = warmup_factor + (1 - warmup_factor) * it / warmup_iters` during warm-up, then 1, and
    - cosine: `min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * p)) / 2`, p = (it - warmup_iters) /
      (total - warmup_iters) clipped to [0, 1], so the decay starts after warm-up (MAE);
    - step: `gamma ** (milestones passed)`, a milestone m passed once `it // iters_per_epoch >= m`;
    - constant: 1.
    """
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule: unknown schedule {cfg.schedule!r}, expected one of {SCHEDULES}")
    if iters_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"build_scheduler: iters_per_epoch ({iters_per_epoch}) and epochs ({epochs}) must be > 0")
    total, warmup = iters_per_epoch * epochs, max(0, cfg.warmup_iters)
    milestones = sorted(cfg.milestones)

    # A closure, not a callable object: LambdaLR then keeps no lambda state in its state_dict.
    def factor(it: int) -> float:
        warm = cfg.warmup_factor + (1.0 - cfg.warmup_factor) * it / warmup if it < warmup else 1.0
        if cfg.schedule == "cosine":
            progress = min(1.0, max(0.0, (it - warmup) / max(1, total - warmup)))
            main = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif cfg.schedule == "step":
            main = cfg.gamma ** sum(it // iters_per_epoch >= m for m in milestones)
        else:
            main = 1.0
        return warm * main

    return LambdaLR(optimizer, factor)
