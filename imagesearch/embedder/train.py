"""Embedder training run: the `EmbedderRun` config tree, `build_parts` for `engine.fit`, `run`, and validation.

Validation (every `train.eval_every` epochs): frame crops of the validation split are the queries
(all, or a fixed `data.val_budget` of them), its product-image crops the gallery, Euclidean distances
between L2-normalised embeddings rank the gallery, and recall@1/5/20 and mAP (full ranking) over item
ids are reported as `val/recall@1`, ..., `val/map`. They are computed chunk by chunk on the model's
device (`metrics.embedding_retrieval_metrics`), in memory O(chunk x G), never as a (Q, G) matrix.
best.pt follows `val/recall@1`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from imagesearch.embedder.data import EmbedderDataConfig, RetrievalSet, build_retrieval_set, build_train_loader
from imagesearch.embedder.loss import EmbedderWithLoss, LossConfig, build_loss
from imagesearch.embedder.model import Embedder, EmbedderModelConfig, build_embedder, load_embedder
from imagesearch.engine import FitResult, TrainConfig, TrainParts, train_stage
from imagesearch.metrics.retrieval import embedding_retrieval_metrics
from imagesearch.optim import OptimConfig
from imagesearch.runtime import progress_bar, resolve_device, seed_everything

log = logging.getLogger(__name__)

KS = (1, 5, 20)
BEST_METRIC = "val/recall@1"


@dataclass
class EmbedderRun:
    """Everything a `scripts/train_embedder.py` run reads; YAML files hold only the deltas."""

    data: EmbedderDataConfig = field(default_factory=EmbedderDataConfig)
    model: EmbedderModelConfig = field(default_factory=EmbedderModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-4, weight_decay=1e-4))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/embedder"))


def check_run(cfg: EmbedderRun) -> None:
    """Reject loss / sampler combinations that cannot train, naming the keys."""
    if cfg.data.sampler == "triplet" and (cfg.loss.name != "triplet" or cfg.loss.miner != "none"):
        raise ValueError(
            f"data.sampler 'triplet' gives fixed triplets: it needs loss.name 'triplet' and loss.miner 'none', "
            f"got {cfg.loss.name!r} / {cfg.loss.miner!r}; use data.sampler 'pk'"
        )


def retrieval_metrics(
    query_emb: Tensor,
    query_labels: Sequence[str],
    gallery_emb: Tensor,
    gallery_labels: Sequence[str],
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """recall@1/5/20 and mAP of queries against a gallery by Euclidean distance (float64, chunked).

    Args:
        query_emb: (Q, D) L2-normalised; gallery_emb: (G, D) L2-normalised.
        query_labels: (Q,) item ids; gallery_labels: (G,) item ids.
        device: where the distances are computed; None = where `query_emb` is.

    Returns:
        {"val/recall@1": ..., "val/recall@5": ..., "val/recall@20": ..., "val/map": ...}.
    """
    metrics = embedding_retrieval_metrics(query_emb, query_labels, gallery_emb, gallery_labels, ks=KS, device=device)
    return {f"val/{k}": v for k, v in metrics.items()}


@torch.no_grad()
def embed_loader(
    embedder: nn.Module, loader: DataLoader, device: torch.device, desc: str = "embed", progress: bool = True
) -> Tensor:
    """Embeddings (N, D) float32 on the CPU of every image of a loader of (image, target) batches."""
    batches = progress_bar(loader, enabled=progress, desc=desc, leave=False)
    out = [embedder(images.to(device)).float().cpu() for images, _ in batches]
    return torch.cat(out)


def evaluate_embedder(embedder: nn.Module, retrieval: RetrievalSet, progress: bool = True) -> dict[str, float]:
    """Validation metrics of `embedder` (put in eval mode for the call, restored after)."""
    was_training = embedder.training
    embedder.eval()
    device = next(embedder.parameters()).device
    try:
        queries = embed_loader(embedder, retrieval.queries, device, "val queries", progress)
        gallery = embed_loader(embedder, retrieval.gallery, device, "val gallery", progress)
    finally:
        embedder.train(was_training)
    return retrieval_metrics(queries, retrieval.query_labels, gallery, retrieval.gallery_labels, device)


def build_parts(cfg: EmbedderRun) -> TrainParts:
    """Everything `engine.train_stage` needs: the model (embedder + loss), training loader, evaluation hook,
    parameter groups and best.pt's metric (val/recall@1, or train/loss without a validation split).

    `parts.config` is the resolved run config: `model.classifier` made explicit when `model.init_checkpoint`
    is set, which is what `fit` must store so that `load_embedder` rebuilds the model alone.
    """
    check_run(cfg)
    # Seeded before the first random draw, so the initial network (random parts included) is the one
    # `evaluate_run(cfg)` reports as the untrained baseline.
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    embedder = build_embedder(cfg.model)
    cfg = dataclasses.replace(cfg, model=embedder.cfg)
    loader, identities, _ = build_train_loader(cfg.data, cfg.model.image_size, cfg.train.seed)
    criterion = build_loss(cfg.loss, len(identities), embedder.embed_dim)
    model = EmbedderWithLoss(embedder, criterion)
    params: list[dict] = [{"params": [p for p in embedder.parameters() if p.requires_grad]}]
    loss_params = [p for p in criterion.parameters() if p.requires_grad]
    if loss_params:
        params.append({"params": loss_params, "lr": cfg.optim.lr * cfg.loss.lr_mult})
    evaluate = None
    if cfg.data.val_root:
        retrieval = build_retrieval_set(cfg.data.val_root, cfg.data, cfg.model.image_size, cfg.train.seed)

        def evaluate(wrapper: nn.Module, epoch: int) -> dict[str, float]:
            return evaluate_embedder(wrapper.embedder, retrieval, cfg.train.progress)  # type: ignore[arg-type]

    log.info(
        "embedder: D=%d, %d identities, %d trainable tensors, loss %s (miner %s), sampler %s",
        embedder.embed_dim, len(identities), len(params[0]["params"]), cfg.loss.name, cfg.loss.miner, cfg.data.sampler,
    )  # fmt: skip
    best = (BEST_METRIC, "max") if evaluate is not None else ("train/loss", "min")
    return TrainParts(model=model, train_loader=loader, evaluate=evaluate, params=params, config=cfg,
                      best_metric=best[0], mode=best[1])  # fmt: skip


def evaluate_run(cfg: EmbedderRun, checkpoint: str | Path | None = None) -> dict[str, float]:
    """Validation metrics of a trained embedder checkpoint, or (None) of the model `cfg.model` builds.

    The second form is the untrained baseline: the same network as `build_parts(cfg)` starts training
    from (same seed; random or `init_checkpoint` weights).
    """
    if not cfg.data.val_root:
        raise ValueError("data.val_root is empty: nothing to evaluate on")
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    embedder: Embedder = load_embedder(checkpoint) if checkpoint else build_embedder(cfg.model)
    embedder.to(resolve_device(cfg.train.device))
    retrieval = build_retrieval_set(cfg.data.val_root, cfg.data, embedder.cfg.image_size, cfg.train.seed)
    return evaluate_embedder(embedder, retrieval, cfg.train.progress)


def run(cfg: EmbedderRun) -> FitResult:
    """Train the embedder (`scripts/train_embedder.py`, the pipeline's embedder stage): `train_stage` of
    `build_parts`. Writes to `cfg.train.out_dir` and resumes from its last.pt.

    Returns:
        The engine's `FitResult`.
    """
    return train_stage(build_parts(cfg))
