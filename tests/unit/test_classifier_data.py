"""Classifier data on a generated split: crop counts, crop pixels, targets, sources, the balanced loader, seeded augmentation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from imagesearch.classifier.data import ClassifierDataConfig, build_datasets, build_loaders, dataset_records
from imagesearch.data.crops import AugSeedSampler, CropDataset, expand_box
from imagesearch.data.labels import CATEGORY_INDEX, normalise_label
from imagesearch.data.samplers import ClassBalancedSampler
from imagesearch.runtime import set_data_epoch
from imagesearch.synthetic import SyntheticConfig, generate_split

TINY = SyntheticConfig(frames=41, width=96, height=160, image_size=96, max_images=3)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls_data")
    generate_split(root / "train", 6, 0, TINY)
    generate_split(root / "val", 4, 1, TINY)
    return root


def _json_counts(root: Path) -> Counter:
    """Boxes per (source, category) read straight from the annotation files (every video is present)."""
    counts: Counter = Counter()
    for path in root.glob("image_annotation/*/*.json"):
        for ann in json.loads(path.read_text(encoding="utf-8"))["annotations"]:
            counts["image", normalise_label(ann["label"])] += 1
    for path in root.glob("video_annotation/*.json"):
        for frame in json.loads(path.read_text(encoding="utf-8"))["frames"]:
            for ann in frame["annotations"]:
                counts["frame", normalise_label(ann["label"])] += 1
    return counts


def _cfg(root: Path, **kw: object) -> ClassifierDataConfig:
    base = dict(train_roots=[str(root / "train")], val_root=str(root / "val"), cache_dir=str(root / "cache"),
                max_side=64, batch_size=4, num_workers=0, samples_per_epoch=40)  # fmt: skip
    return ClassifierDataConfig(**(base | kw))  # type: ignore[arg-type]


def test_crops_cover_every_box(splits: Path) -> None:
    train, val = build_datasets(_cfg(splits), image_size=32)
    for ds, name in ((train, "train"), (val, "val")):
        got = Counter((r.source, r.label) for r in dataset_records(ds))
        assert got == _json_counts(splits / name)
    image, target = train[0]
    rec = dataset_records(train)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert target.dtype == torch.int64 and int(target) == CATEGORY_INDEX[rec.label] == rec.category


def test_sources_and_distractors(splits: Path) -> None:
    train, _ = build_datasets(_cfg(splits, sources=["image"], include_distractors=False), image_size=32)
    records = dataset_records(train)
    assert {r.source for r in records} == {"image"} and all(r.instance_id > 0 for r in records)
    with pytest.raises(ValueError, match="data.sources"):
        build_datasets(_cfg(splits, sources=["video"]), image_size=32)


def _cut(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, max_side: int) -> np.ndarray:
    window = image[y1:y2, x1:x2]
    scale = min(1.0, max_side / max(window.shape[:2]))
    size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
    return cv2.resize(window, size, interpolation=cv2.INTER_AREA).astype(float)


def test_crop_pixels_match_the_box(splits: Path) -> None:
    train, _ = build_datasets(_cfg(splits, margin=0.2), image_size=32)
    ds: CropDataset = train.datasets[0]  # type: ignore[assignment]
    checked = 0
    for k, rec in enumerate(ds.records):
        if rec.source != "image" or rec.instance_id == 0:  # a distractor's record names no item folder
            continue
        path = splits / "train" / "image" / rec.item_id / rec.img_name
        original = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        x1, y1, x2, y2 = expand_box(rec.box, 0.2, original.shape[1], original.shape[0])
        if x1 < 4 or x2 + 4 > original.shape[1]:
            continue  # no room for the shifted control
        crop = ds.load_rgb(k).astype(float)
        error = np.abs(crop - _cut(original, x1, y1, x2, y2, 64)).mean()
        control = np.abs(crop - _cut(original, x1 + 4, y1, x2 + 4, y2, 64)).mean()
        # JPEG twice (product image, then the cached crop) on fine synthetic textures costs a few
        # levels; the same window 4 px to the side shows how far off a wrong cut would be.
        assert error < 6.0 and error < 0.5 * control, (rec.file, error, control)
        checked += 1
    assert checked >= 3


def test_balanced_loader(splits: Path) -> None:
    cfg = _cfg(splits)
    train, val = build_datasets(cfg, image_size=32)
    loader, val_loader = build_loaders(cfg, train, val, seed=0)
    assert isinstance(loader.sampler, AugSeedSampler) and isinstance(loader.sampler.inner, ClassBalancedSampler)
    assert len(loader.sampler) == 40
    assert len(loader) == 10 and len(val_loader) == -(-len(val) // cfg.eval_batch_size)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and targets.shape == (4,)
    # Same seed and epoch -> the same draws (a resumed run replays its data order).
    loader.sampler.set_epoch(3)
    first = list(loader.sampler)
    loader.sampler.set_epoch(3)
    assert list(loader.sampler) == first
    plain, _ = build_loaders(_cfg(splits, balanced=False), train, val, seed=0)
    assert isinstance(plain.sampler.inner, RandomSampler) and len(plain.dataset) == len(train)


def _epoch(loader: DataLoader, epoch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    set_data_epoch(loader, epoch, seed)  # what engine.fit does before each epoch
    images, targets = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(targets)


def test_training_augmentation_repeats_with_the_seed(splits: Path) -> None:
    cfg = _cfg(splits, samples_per_epoch=8)
    train, val = build_datasets(cfg, image_size=32)
    loader, _ = build_loaders(cfg, train, val, seed=5)
    # A second run: datasets built again, two loader workers instead of none.
    train2, val2 = build_datasets(cfg, image_size=32)
    loader2, _ = build_loaders(_cfg(splits, samples_per_epoch=8, num_workers=2), train2, val2, seed=5)
    images, targets = _epoch(loader, 1, seed=5)
    images2, targets2 = _epoch(loader2, 1, seed=5)
    assert images.shape == (8, 3, 32, 32)
    torch.testing.assert_close(images2, images, rtol=0, atol=0)
    assert torch.equal(targets2, targets)

    # Oracle: each crop is the shared transform, seeded with its key's aug_seed, applied to the cached crop.
    loader.sampler.set_epoch(1)
    keys = list(loader.sampler)
    transform = train.datasets[0].transform
    for row, (index, aug_seed) in enumerate(keys[:3]):
        part = np.searchsorted(train.cumulative_sizes, index, side="right")
        local = index - (train.cumulative_sizes[part - 1] if part else 0)
        transform.set_random_seed(aug_seed)
        expected = transform(image=train.datasets[part].load_rgb(local))["image"]
        torch.testing.assert_close(images[row], expected, rtol=0, atol=0)

    # Epoch 2 gives the same crop (dataset index) other augmentations; epoch 1 again the same ones.
    seeded = loader.dataset
    loader.sampler.set_epoch(2)
    seeds2 = [s for _, s in list(loader.sampler)]
    same_index = [(seeded[(i, s1)][0], seeded[(i, s2)][0]) for (i, s1), s2 in zip(keys, seeds2, strict=True)]
    assert sum(not torch.equal(a, b) for a, b in same_index) >= 4
    torch.testing.assert_close(_epoch(loader, 1, seed=5)[0], images, rtol=0, atol=0)
    assert not torch.equal(_epoch(loader, 2, seed=5)[0], images)
