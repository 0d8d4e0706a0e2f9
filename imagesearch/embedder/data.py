"""Embedder data: identity crops of the training splits, triplet or P x K loaders, the validation retrieval set.

Crops are cut once per split into a cache (`imagesearch.data.crops.extract_crops`), the one the
classifier reads when its crop geometry is the same. Only product instances are kept (distractors, instance_id 0, have no identity; `sampler.is_identity_crop`).
Training identities are instance ids, mapped to 0..n-1 by an `IdentityMap` (see `sampler`).
Validation is retrieval: frame crops (queries) against product-image crops (gallery) of a separate
split, labelled by item id (what the matcher has to find).

Training datasets are keyed by what the samplers yield, augmentation seed included (`SeededCrops`,
`TripletDataset`), so a run's augmentations, like its draws, follow from (train.seed, epoch) alone:
two runs with one config give the same numbers, and a resumed run those of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader

from imagesearch.data.augment import crop_transform
from imagesearch.data.crop_config import CropDataConfig, eval_loader, load_split_crops, train_loader_kwargs, train_roots
from imagesearch.data.crops import CropDataset, CropRecord, SeededCrops
from imagesearch.embedder.sampler import PKSampler, TripletSampler, is_identity_crop

log = logging.getLogger(__name__)

SAMPLERS = ("triplet", "pk")


@dataclass
class EmbedderDataConfig(CropDataConfig):
    """Where the crops come from and how training batches are formed (the shared keys: `CropDataConfig`).

    `val_root` "" means no validation (best.pt then follows train/loss).

    Attributes:
        sampler: "triplet" (the original's anchor/positive/negative triplets, `TripletSampler`) or
            "pk" (P identities x K crops per batch, `PKSampler`; for mining and ArcFace).
        batch_size: triplets per batch ("triplet"; a batch embeds 3 x batch_size crops).
        triplets_per_epoch: "triplet": 0 = one triplet per usable anchor frame crop.
        p, k: "pk": identities per batch and crops per identity.
        batches_per_epoch: "pk": 0 = usable crops // (p * k).
        val_budget: validation query (frame) crops scored each evaluation, a fixed random subset drawn
            with `train.seed`; 0 = all. The gallery is always whole (a smaller one would inflate recall).
    """

    sampler: str = "triplet"
    batch_size: int = 32
    triplets_per_epoch: int = 0
    p: int = 16
    k: int = 4
    batches_per_epoch: int = 0
    val_budget: int = 0


class IdentityMap:
    """Instance id -> training label 0..n-1 (sorted ids); called on a `CropRecord` as a CropDataset target.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(self, instance_ids: list[int]) -> None:
        self.index = {iid: i for i, iid in enumerate(sorted(set(instance_ids)))}

    def __len__(self) -> int:
        return len(self.index)

    def __call__(self, record: CropRecord) -> int:
        return self.index[record.instance_id]


def no_target(record: CropRecord) -> int:
    """Validation crops need no target (labels are kept aside); module-level so workers can pickle it."""
    return 0


def load_identity_crops(root: str | Path, cfg: EmbedderDataConfig) -> tuple[Path, list[CropRecord]]:
    """Read a split, cut (or reuse) its crops and keep the product-instance ones.

    Returns:
        (the cache folder, the kept records: frame and product-image crops with instance_id > 0).
    """
    folder, kept = load_split_crops(root, cfg, is_identity_crop)
    frames = sum(r.source == "frame" for r in kept)
    log.info("%s: %d identity crops (frames %d, product images %d)", root, len(kept), frames, len(kept) - frames)
    return folder, kept


class TripletDataset(SeededCrops):
    """Crops as (anchor, positive, negative) triplets, keyed by the (a, p, n, aug_seed) of a `TripletSampler`.

    `dataset[(a, p, n, aug_seed)]` returns the three images (3, S, S) float32, augmented from a generator
    seeded with aug_seed, and their labels (3,) int64. The draws (and so the seeding) live in the sampler:
    pass it as the DataLoader's `sampler`; `engine.fit` re-seeds it every epoch through `set_epoch`.
    """

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        *triple, aug_seed = key
        self.transform.set_random_seed(aug_seed)
        (a, la), (p, lp), (n, ln) = (self.crops[i] for i in triple)
        return a, p, n, torch.stack([la, lp, ln])


def collate_triplets(batch: list[tuple[Tensor, Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack B triplets into one forward pass.

    Returns:
        images (3B, 3, S, S): the B anchors, then the B positives, then the B negatives;
        labels (3B,) in the same order; triplets (3, B): row indices of (anchor, positive, negative).
    """
    anchors, positives, negatives, labels = zip(*batch, strict=True)
    b = len(batch)
    images = torch.stack([*anchors, *positives, *negatives])
    flat = torch.stack(labels).T.reshape(-1)  # (3, B) -> anchors' labels, positives', negatives'
    triplets = torch.arange(3 * b).view(3, b)
    return images, flat, triplets


def namespace_parts(loaded: list[tuple[Path, list[CropRecord]]]) -> list[tuple[Path, list[CropRecord]]]:
    """Keep the identities of several training parts apart.

    Item, video and instance ids are only defined within one split (SPEC §1 maps an instance to its item
    through that split's own image annotations), and nothing says that two parts never reuse one: pooled
    as they are, two products that share an id would become one identity (wrong positives, missing
    negatives). With two or more parts, each part's item ids become "<part>/<item_id>" and its instance
    ids are renumbered 1, 2, ... over the (part, instance) pairs; one part is returned unchanged.

    Args:
        loaded: (crop cache folder, records) per training part, in `data.train_roots` order.

    Returns:
        The same folders with namespaced records (crop files are untouched).
    """
    if len(loaded) < 2:
        return loaded
    renumbered: dict[tuple[int, int], int] = {}
    parts_of: dict[str, set[int]] = {}
    out = []
    for part, (folder, records) in enumerate(loaded):
        recs = []
        for r in records:
            parts_of.setdefault(r.item_id, set()).add(part)
            instance = renumbered.setdefault((part, r.instance_id), len(renumbered) + 1) if r.instance_id > 0 else 0
            recs.append(dataclasses.replace(r, item_id=f"{part}/{r.item_id}" if r.item_id else "", instance_id=instance))
        out.append((folder, recs))
    shared = sum(len(p) > 1 for item, p in parts_of.items() if item)
    log.info("training parts: %d item ids occur in more than one part; each part's ids are kept apart", shared)
    return out


def build_train_loader(
    cfg: EmbedderDataConfig, image_size: int, seed: int
) -> tuple[DataLoader, IdentityMap, list[CropRecord]]:
    """The training loader of `cfg.train_roots`, by `cfg.sampler`.

    Returns:
        (loader, identity map, training records). A "triplet" loader yields (images (3B, 3, S, S),
        labels (3B,), triplets (3, B)); a "pk" loader yields (images (P*K, 3, S, S), labels (P*K,)).

    Raises:
        ValueError: an unknown sampler, no training roots, or no crops.
    """
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"data.sampler: unknown sampler {cfg.sampler!r}, expected one of {list(SAMPLERS)}")
    loaded = namespace_parts([load_identity_crops(root, cfg) for root in train_roots(cfg)])
    records = [r for _, recs in loaded for r in recs]
    if not records:
        raise ValueError(f"data.train_roots {cfg.train_roots}: no product-instance crops")
    identities = IdentityMap([r.instance_id for r in records])
    transform = crop_transform(image_size, train=True, cfg=cfg.augment)
    crops = ConcatDataset([CropDataset(folder, recs, transform, identities) for folder, recs in loaded if recs])
    common = train_loader_kwargs(cfg, seed)
    if cfg.sampler == "triplet":
        sampler = TripletSampler(records, cfg.triplets_per_epoch, seed=seed)
        loader = DataLoader(
            TripletDataset(crops, transform),
            batch_size=cfg.batch_size,
            sampler=sampler,
            collate_fn=collate_triplets,
            **common,
        )
    else:
        labels = [identities(r) for r in records]
        pk = PKSampler(labels, [r.source for r in records], cfg.p, cfg.k, cfg.batches_per_epoch, seed=seed)
        loader = DataLoader(SeededCrops(crops, transform), batch_sampler=pk, **common)
    return loader, identities, records


@dataclass
class RetrievalSet:
    """Validation retrieval: frame crops (queries) against product-image crops (gallery).

    Attributes:
        queries, gallery: loaders of (image (3, S, S), 0) in order.
        query_labels, gallery_labels: item ids, aligned with the loaders.
    """

    queries: DataLoader
    gallery: DataLoader
    query_labels: list[str]
    gallery_labels: list[str]


def build_retrieval_set(root: str | Path, cfg: EmbedderDataConfig, image_size: int, seed: int = 0) -> RetrievalSet:
    """Frame and product-image crops of a validation split, resized only.

    With `cfg.val_budget` > 0, the queries are that many frame crops drawn with `seed` (in split order),
    the same ones at every evaluation, so that epochs compare.

    Raises:
        ValueError: the split has no frame crops or no product-image crops.
    """
    folder, records = load_identity_crops(root, cfg)
    transform = crop_transform(image_size, train=False, cfg=cfg.augment)
    parts = {s: [r for r in records if r.source == s] for s in ("frame", "image")}
    if not parts["frame"] or not parts["image"]:
        raise ValueError(
            f"{root}: validation needs frame and product-image crops, got {len(parts['frame'])} and {len(parts['image'])}"
        )

    if 0 < cfg.val_budget < len(parts["frame"]):
        keep = np.sort(np.random.default_rng(seed).choice(len(parts["frame"]), cfg.val_budget, replace=False))
        log.info("%s: %d of %d query crops scored (data.val_budget)", root, len(keep), len(parts["frame"]))
        parts["frame"] = [parts["frame"][i] for i in keep]

    def loader(recs: list[CropRecord]) -> DataLoader:
        return eval_loader(CropDataset(folder, recs, transform, no_target), cfg)

    return RetrievalSet(
        queries=loader(parts["frame"]),
        gallery=loader(parts["image"]),
        query_labels=[r.item_id for r in parts["frame"]],
        gallery_labels=[r.item_id for r in parts["image"]],
    )
