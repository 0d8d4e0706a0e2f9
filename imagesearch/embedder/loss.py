"""Embedder losses (pytorch-metric-learning) and the train-mode wrapper that returns the engine's loss dict.

* "triplet": `max(d(a, p) - d(a, n) + margin, 0)` with d the Euclidean distance between
  L2-normalised embeddings (SPEC §3 stage 5), averaged over all triplets (PML's `MeanReducer`; PML's
  default would average over the non-zero ones only). The triplets are the sampler's fixed ones
  (`TripletSampler`) or mined in a P x K batch (`MINERS`): "batch_hard" (the farthest positive and
  the closest negative of each anchor, Hermans et al. 2017 / HardNet) or "semihard" (negatives
  farther than the positive but within the margin, FaceNet). "none" on a P x K batch uses every
  valid triplet.
* "arcface": additive angular margin softmax over training identities (Deng et al. 2019),
  PML's `ArcFaceLoss`; it owns a class weight matrix (D x classes) that is trained with the
  embedder and saved in its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from torch import Tensor, nn


@dataclass
class ArcFaceConfig:
    """ArcFace settings, in PML's units.

    Attributes:
        scale: the logit scale s (64 in the paper).
        margin: the additive angular margin m in *degrees* (28.6 deg = 0.5 rad, the paper's).
    """

    scale: float = 64.0
    margin: float = 28.6


@dataclass
class LossConfig:
    """Which loss trains the embedder.

    Attributes:
        name: "triplet" | "arcface" (a key of `LOSSES`).
        miner: "none" | "batch_hard" | "semihard" (a key of `MINERS`); triplet loss on P x K batches only.
        margin: triplet margin, in Euclidean distance between unit vectors (0..2).
        arcface: ArcFace scale and angular margin.
        lr_mult: learning-rate multiplier of the loss's own parameters (ArcFace class weights), which
            start random while the network starts trained.
    """

    name: str = "triplet"
    miner: str = "none"
    margin: float = 0.3
    arcface: ArcFaceConfig = field(default_factory=ArcFaceConfig)
    lr_mult: float = 1.0


def _euclidean() -> distances.LpDistance:
    return distances.LpDistance(normalize_embeddings=True, p=2, power=1)


MINERS: dict[str, Callable[[float], miners.BaseMiner | None]] = {
    "none": lambda margin: None,
    "batch_hard": lambda margin: miners.BatchHardMiner(distance=_euclidean()),
    "semihard": lambda margin: miners.TripletMarginMiner(
        margin=margin, type_of_triplets="semihard", distance=_euclidean()
    ),
}


class TripletCriterion(nn.Module):
    """Triplet margin loss on given or mined triplets.

    Args:
        margin: the triplet margin.
        miner: a key of `MINERS`; used when `forward` gets no triplets.

    Call: `(embeddings (N, D), labels (N,), triplets (3, T) or None) -> scalar`, where `triplets`
    holds anchor, positive and negative row indices into `embeddings`.
    """

    name = "triplet"

    def __init__(self, margin: float, miner: str = "none") -> None:
        super().__init__()
        if miner not in MINERS:
            raise ValueError(f"loss.miner: unknown miner {miner!r}, expected one of {sorted(MINERS)}")
        self.margin = margin
        self.loss = losses.TripletMarginLoss(margin=margin, distance=_euclidean(), reducer=reducers.MeanReducer())
        self.miner = MINERS[miner](margin)

    def forward(self, embeddings: Tensor, labels: Tensor, triplets: Tensor | None = None) -> Tensor:
        if triplets is not None:
            indices = tuple(triplets)
        elif self.miner is not None:
            indices = self.miner(embeddings, labels)
        else:
            indices = None  # PML forms every valid triplet of the batch
        return self.loss(embeddings, labels, indices)


class ArcFaceCriterion(nn.Module):
    """ArcFace loss over `num_classes` identities (labels 0..num_classes-1).

    Args:
        num_classes: training identities.
        embed_dim: D of the embeddings.
        cfg: scale and angular margin (degrees).

    Call: `(embeddings (N, D), labels (N,), triplets ignored) -> scalar`.
    """

    name = "arcface"

    def __init__(self, num_classes: int, embed_dim: int, cfg: ArcFaceConfig) -> None:
        super().__init__()
        self.loss = losses.ArcFaceLoss(num_classes, embed_dim, margin=cfg.margin, scale=cfg.scale)

    def forward(self, embeddings: Tensor, labels: Tensor, triplets: Tensor | None = None) -> Tensor:
        return self.loss(embeddings, labels)


LOSSES: dict[str, Callable[[LossConfig, int, int], nn.Module]] = {
    "triplet": lambda cfg, num_classes, embed_dim: TripletCriterion(cfg.margin, cfg.miner),
    "arcface": lambda cfg, num_classes, embed_dim: ArcFaceCriterion(num_classes, embed_dim, cfg.arcface),
}


def build_loss(cfg: LossConfig, num_classes: int, embed_dim: int) -> nn.Module:
    """The criterion module named by `cfg.name`.

    Args:
        cfg: the loss config.
        num_classes: training identities (ArcFace's classes).
        embed_dim: embedding size D (ArcFace's weight rows).

    Raises:
        ValueError: an unknown loss, or a miner with ArcFace.
    """
    if cfg.name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {cfg.name!r}, expected one of {sorted(LOSSES)}")
    if cfg.name == "arcface" and cfg.miner != "none":
        raise ValueError(f"loss.miner: {cfg.miner!r} mines triplets; ArcFace takes none")
    return LOSSES[cfg.name](cfg, num_classes, embed_dim)


class EmbedderWithLoss(nn.Module):
    """The embedder and its criterion as one module whose forward returns the engine's loss dict.

    Args:
        embedder: maps images (N, 3, H, W) to L2-normalised (N, D) embeddings.
        criterion: a `TripletCriterion` or `ArcFaceCriterion` (its parameters are part of this module,
            so they reach the optimizer and the checkpoint).

    Call: `(images (N, 3, H, W), labels (N,) int64, triplets (3, T) int64 or None) -> {name: loss}`,
    with name "triplet" or "arcface".
    """

    def __init__(self, embedder: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder
        self.criterion = criterion

    def forward(self, images: Tensor, labels: Tensor, triplets: Tensor | None = None) -> dict[str, Tensor]:
        embeddings = self.embedder(images)
        # Distances and logits in float32 even under autocast: PML's ArcFace would otherwise cast its
        # float32 class weights to the autocast dtype in place.
        with torch.autocast(images.device.type, enabled=False):
            value = self.criterion(embeddings.float(), labels, triplets)
        return {self.criterion.name: value}
