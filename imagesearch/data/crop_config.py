"""What the classifier and the embedder share about garment crops: the config keys and the loader set-up.

Both stages train on crops of the same splits (`imagesearch.data.crops`): `CropDataConfig` holds the
keys they have in common (where the splits and the cache are, how crops are cut, loader sizes and
augmentation), and each stage's data config adds its own (`ClassifierDataConfig`, `EmbedderDataConfig`).
Keys keep their names, so every YAML file reads as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from imagesearch.data.augment import AugmentConfig
from imagesearch.data.crops import CropRecord, extract_crops
from imagesearch.data.reader import load_split

log = logging.getLogger(__name__)


@dataclass
class CropDataConfig:
    """The crop-data keys every crop-trained stage has.

    Attributes:
        train_roots: training split folders (competition layout).
        val_root: the validation split folder (a separate split).
        cache_dir: parent folder of the crop caches (one cache per split and crop geometry, which the
            classifier and the embedder share).
        margin: box growth on each side, as a fraction of the box size.
        max_side: longer side of a cached crop, in pixels.
        eval_batch_size: crops per batch in validation.
        num_workers: loader worker processes; also the processes that cut a split's crop cache when it
            is first built (0 or 1: in the main process).
        augment: training augmentation strengths.
    """

    train_roots: list[str] = field(default_factory=lambda: ["data/train_dataset_part1"])
    val_root: str = "data/validation_dataset_part1"
    cache_dir: str = "data/cache/crops"
    margin: float = 0.1
    max_side: int = 256
    eval_batch_size: int = 64
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def load_split_crops(
    root: str | Path,
    cfg: CropDataConfig,
    keep: Callable[[CropRecord], bool],
    include_distractors: bool = False,
) -> tuple[Path, list[CropRecord]]:
    """Read a split, cut (or reuse) its crops into `cfg.cache_dir`, and keep those `keep` accepts.

    Args:
        root: the split folder.
        cfg: the crop settings (`cache_dir`, `margin`, `max_side`) and the cutting processes (`num_workers`).
        keep: which crop records to keep.
        include_distractors: also keep garments with instance_id 0 (the cache holds them either way).

    Returns:
        (the cache folder, the kept crop records).
    """
    split = load_split(root)
    if split.skipped:
        log.warning("%s: %d malformed records skipped", root, len(split.skipped))
    folder, records = extract_crops(
        split, cfg.cache_dir, margin=cfg.margin, max_side=cfg.max_side, include_distractors=include_distractors,
        workers=cfg.num_workers,
    )  # fmt: skip
    return folder, [r for r in records if keep(r)]


def train_roots(cfg: CropDataConfig) -> list[str]:
    """`cfg.train_roots`; a ValueError naming `data.train_roots` when it lists no split."""
    if not cfg.train_roots:
        raise ValueError("data.train_roots is empty")
    return cfg.train_roots


def train_loader_kwargs(cfg: CropDataConfig, seed: int) -> dict[str, Any]:
    """DataLoader settings of a training loader: workers and a seeded generator.

    `engine.fit` re-seeds the generator every epoch (`set_data_epoch`); workers are not persistent so
    that each epoch's workers start from that state (and from the dataset as the epoch set it).
    """
    return {
        "num_workers": cfg.num_workers,
        "generator": torch.Generator().manual_seed(seed),
        "persistent_workers": False,
    }


def eval_loader(dataset: Dataset, cfg: CropDataConfig) -> DataLoader:
    """A validation loader: `cfg.eval_batch_size` crops per batch, in dataset order."""
    return DataLoader(dataset, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers)
