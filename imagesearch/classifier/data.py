"""Classifier data: garment crops of frames and product images, class-balanced draws, augmentation.

Training crops come from one or more training splits, validation crops from a separate split
(SPEC §3 stage 4). Crops are cut once into a cache (`imagesearch.data.crops.extract_crops`); each
epoch draws `samples_per_epoch` of them balanced over the 23 categories, with video-frame and
product-image crops in a fixed ratio (`ClassBalancedSampler`, the sampler the detector uses).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from imagesearch.data.augment import AugmentConfig, crop_transform
from imagesearch.data.crops import CropDataset, CropRecord, extract_crops
from imagesearch.data.reader import load_split
from imagesearch.detector.sampler import ClassBalancedSampler

log = logging.getLogger(__name__)

SOURCES = ("frame", "image")


@dataclass
class ClassifierDataConfig:
    """Where the crops come from and how they are drawn.

    Attributes:
        train_roots: training split folders (competition layout).
        val_root: the validation split folder (a separate split).
        cache_dir: parent folder of the crop caches.
        margin: box growth on each side, as a fraction of the box size.
        max_side: longer side of a cached crop, in pixels.
        include_distractors: also use garments with instance_id 0 (their category is still known).
        sources: which crops to use, among "frame" (video frames) and "image" (product images).
        balanced: draw training crops balanced over categories (else: a plain shuffle).
        group_ratios: share of frame / image crops among the balanced draws.
        samples_per_epoch: balanced draws per epoch; 0 = the number of training crops.
        batch_size / eval_batch_size: loader batch sizes.
        num_workers: loader worker processes.
        augment: training augmentation strengths.
    """

    train_roots: list[str] = field(default_factory=lambda: ["data/train_dataset_part1"])
    val_root: str = "data/validation_dataset_part1"
    cache_dir: str = "data/cache/crops"
    margin: float = 0.1
    max_side: int = 256
    include_distractors: bool = True
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    balanced: bool = True
    group_ratios: dict[str, float] = field(default_factory=lambda: {"frame": 1.0, "image": 1.0})
    samples_per_epoch: int = 0
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def category_target(record: CropRecord) -> int:
    """The training target of a crop: its category index (module-level so loader workers can pickle it)."""
    return record.category


def load_crops(root: str | Path, cfg: ClassifierDataConfig) -> tuple[Path, list[CropRecord]]:
    """Read a split, cut (or reuse) its crops, and keep those of `cfg.sources`.

    Returns:
        (the cache folder, the kept crop records).
    """
    unknown = sorted(set(cfg.sources) - set(SOURCES))
    if unknown or not cfg.sources:
        raise ValueError(f"data.sources: {cfg.sources} must be a non-empty subset of {list(SOURCES)}")
    split = load_split(root)
    if split.skipped:
        log.warning("%s: %d malformed records skipped", root, len(split.skipped))
    folder, records = extract_crops(
        split, cfg.cache_dir, margin=cfg.margin, max_side=cfg.max_side, include_distractors=cfg.include_distractors
    )
    kept = [r for r in records if r.source in cfg.sources]
    log.info(
        "%s: %d crops (%s)", root, len(kept), ", ".join(f"{s} {sum(r.source == s for r in kept)}" for s in SOURCES)
    )
    return folder, kept


def build_datasets(cfg: ClassifierDataConfig, image_size: int) -> tuple[ConcatDataset, ConcatDataset]:
    """Training crops (augmented) of `train_roots` and validation crops (resized only) of `val_root`.

    Returns:
        (train, val): ConcatDatasets of `CropDataset`s yielding (image (3, S, S) float32, category int64).

    Raises:
        ValueError: a split with no crops, naming its folder.
    """
    train_t = crop_transform(image_size, train=True, cfg=cfg.augment)
    val_t = crop_transform(image_size, train=False, cfg=cfg.augment)

    def dataset(root: str, transform: object) -> CropDataset:
        folder, records = load_crops(root, cfg)
        if not records:
            raise ValueError(f"{root}: no garment crops of sources {cfg.sources}")
        return CropDataset(folder, records, transform, category_target)  # type: ignore[arg-type]

    if not cfg.train_roots:
        raise ValueError("data.train_roots is empty")
    return ConcatDataset([dataset(r, train_t) for r in cfg.train_roots]), ConcatDataset([dataset(cfg.val_root, val_t)])


def dataset_records(dataset: ConcatDataset) -> list[CropRecord]:
    """The records of a ConcatDataset of CropDatasets, in index order."""
    return [r for d in dataset.datasets for r in d.records]  # type: ignore[attr-defined]


def build_loaders(
    cfg: ClassifierDataConfig, train_ds: ConcatDataset, val_ds: ConcatDataset, seed: int
) -> tuple[DataLoader, DataLoader]:
    """The training loader (class-balanced or shuffled, seeded) and the validation loader (in order).

    The sampler and the loader's generator are re-seeded each epoch by `engine.set_data_epoch`, so a
    resumed run draws the same crops as an uninterrupted one.
    """
    generator = torch.Generator().manual_seed(seed)
    records = dataset_records(train_ds)
    sampler = None
    if cfg.balanced:
        sampler = ClassBalancedSampler(
            [r.category for r in records],
            num_samples=cfg.samples_per_epoch or len(records),
            groups=[r.source for r in records],
            group_ratios=cfg.group_ratios,
            seed=seed,
        )
    draws = len(sampler) if sampler is not None else len(records)
    train = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=sampler is None,
        drop_last=draws >= cfg.batch_size,  # a last batch of 1 would break BatchNorm in train mode
        num_workers=cfg.num_workers,
        generator=generator,
        persistent_workers=False,
    )
    val = DataLoader(val_ds, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers)
    return train, val
