"""Classifier data: garment crops of frames and product images, class-balanced draws, augmentation.

Training crops come from one or more training splits, validation crops from a separate split
(SPEC §3 stage 4). Crops are cut once into a cache (`imagesearch.data.crops.extract_crops`); each
epoch draws `samples_per_epoch` of them balanced over the 23 categories, with video-frame and
product-image crops in a fixed ratio (`data.samplers.ClassBalancedSampler`, the detector draws its images by it too).
Each draw carries an augmentation seed fixed by (train.seed, epoch, draw) (`AugSeedSampler`,
`SeededCrops`), so two runs with one config see the same augmented crops, whatever the worker count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import ConcatDataset, DataLoader, RandomSampler, Sampler

from imagesearch.data.augment import crop_transform
from imagesearch.data.crop_config import CropDataConfig, eval_loader, load_split_crops, train_loader_kwargs, train_roots
from imagesearch.data.crops import AugSeedSampler, CropDataset, CropRecord, SeededCrops
from imagesearch.data.samplers import ClassBalancedSampler

log = logging.getLogger(__name__)

SOURCES = ("frame", "image")


@dataclass
class ClassifierDataConfig(CropDataConfig):
    """Where the crops come from and how they are drawn (the shared keys: `CropDataConfig`).

    Attributes:
        include_distractors: also use garments with instance_id 0 (their category is still known).
        sources: which crops to use, among "frame" (video frames) and "image" (product images).
        balanced: draw training crops balanced over categories (else: a plain shuffle).
        group_ratios: share of frame / image crops among the balanced draws.
        samples_per_epoch: balanced draws per epoch; 0 = the number of training crops.
        batch_size: crops per training batch.
    """

    include_distractors: bool = True
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    balanced: bool = True
    group_ratios: dict[str, float] = field(default_factory=lambda: {"frame": 1.0, "image": 1.0})
    samples_per_epoch: int = 0
    batch_size: int = 32


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
    folder, kept = load_split_crops(root, cfg, lambda r: r.source in cfg.sources, cfg.include_distractors)
    log.info(
        "%s: %d crops (%s)", root, len(kept), ", ".join(f"{s} {sum(r.source == s for r in kept)}" for s in SOURCES)
    )
    return folder, kept


def build_datasets(cfg: ClassifierDataConfig, image_size: int) -> tuple[ConcatDataset, ConcatDataset]:
    """Training crops (augmented) of `train_roots` and validation crops (resized only) of `val_root`.

    Returns:
        (train, val): ConcatDatasets of `CropDataset`s yielding (image (3, S, S) float32, category int64).
        The training CropDatasets share one transform, which `build_loaders` seeds per draw.

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

    return ConcatDataset([dataset(r, train_t) for r in train_roots(cfg)]), ConcatDataset([dataset(cfg.val_root, val_t)])


def dataset_records(dataset: ConcatDataset) -> list[CropRecord]:
    """The records of a ConcatDataset of CropDatasets, in index order."""
    return [r for d in dataset.datasets for r in d.records]  # type: ignore[attr-defined]


def build_loaders(
    cfg: ClassifierDataConfig, train_ds: ConcatDataset, val_ds: ConcatDataset, seed: int
) -> tuple[DataLoader, DataLoader]:
    """The training loader (class-balanced or shuffled, seeded) and the validation loader (in order).

    The training loader draws (index, aug_seed) keys (`AugSeedSampler`) from a `SeededCrops` view of
    `train_ds`, so each crop's augmentation is fixed by (seed, epoch, draw). The sampler and the
    loader's generator are re-seeded each epoch by `runtime.set_data_epoch`, so a resumed run draws
    and augments the same crops as an uninterrupted one.

    Returns:
        (train, val): train yields (images (B, 3, S, S) float32, categories (B,) int64); val the same, in order.
    """
    kwargs = train_loader_kwargs(cfg, seed)
    records = dataset_records(train_ds)
    draws: Sampler[int]
    if cfg.balanced:
        draws = ClassBalancedSampler(
            [r.category for r in records],
            num_samples=cfg.samples_per_epoch or len(records),
            groups=[r.source for r in records],
            group_ratios=cfg.group_ratios,
            seed=seed,
        )
    else:  # what `shuffle=True` would build, on the loader's generator (re-seeded every epoch)
        draws = RandomSampler(train_ds, generator=kwargs["generator"])
    transforms = {id(d.transform): d.transform for d in train_ds.datasets}  # type: ignore[attr-defined]
    if len(transforms) != 1:  # SeededCrops seeds one transform: the one all parts share (`build_datasets`)
        raise ValueError(f"build_loaders: the training crops use {len(transforms)} transforms; expected one shared")
    (transform,) = transforms.values()
    train = DataLoader(
        SeededCrops(train_ds, transform),
        batch_size=cfg.batch_size,
        sampler=AugSeedSampler(draws, seed),
        drop_last=len(draws) >= cfg.batch_size,  # a last batch of 1 would break BatchNorm in train mode
        **kwargs,
    )
    return train, eval_loader(val_ds, cfg)
