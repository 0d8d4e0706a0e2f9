"""Embedder datasets: triplet and P x K keys to tensors, seeded augmentation, the triplet batch layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from imagesearch.data.augment import crop_transform
from imagesearch.data.crops import CropDataset, CropRecord
from imagesearch.embedder.data import IdentityMap, SeededCrops, TripletDataset, collate_triplets


def crops_dataset(folder: Path) -> tuple[CropDataset, object]:
    rng = np.random.default_rng(0)
    records = []
    for i, (source, instance) in enumerate((("frame", 7), ("image", 7), ("frame", 3))):
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
        records.append(CropRecord(f"{i}.jpg", source, f"item{instance}", instance, "x", 0, (0.0, 0.0, 1.0, 1.0)))
    transform = crop_transform(32, train=True)
    return CropDataset(folder, records, transform, IdentityMap([3, 7])), transform


def test_triplet_dataset_is_seeded_by_the_key(tmp_path: Path) -> None:
    crops, transform = crops_dataset(tmp_path)
    ds = TripletDataset(crops, transform)
    a, p, n, labels = ds[(0, 1, 2, 11)]
    assert a.shape == p.shape == n.shape == (3, 32, 32) and a.dtype == torch.float32
    assert labels.tolist() == [1, 1, 0]  # instance 7 -> 1, instance 3 -> 0 (sorted ids)
    again = ds[(0, 1, 2, 11)]
    for x, y in zip((a, p, n), again[:3], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    others = [ds[(0, 1, 2, s)][0] for s in range(12, 20)]
    assert any(not torch.equal(a, o) for o in others)  # other seeds, other augmentations


def test_seeded_crops_for_pk_batches(tmp_path: Path) -> None:
    crops, transform = crops_dataset(tmp_path)
    ds = SeededCrops(crops, transform)
    image, label = ds[(2, 5)]
    assert image.shape == (3, 32, 32) and label.item() == 0
    torch.testing.assert_close(ds[(2, 5)][0], image, rtol=0, atol=0)


def test_collate_triplets_layout() -> None:
    batch = [
        (torch.full((3, 2, 2), 10.0 * i), torch.full((3, 2, 2), 10.0 * i + 1), torch.full((3, 2, 2), 10.0 * i + 2),
         torch.tensor([i, i, 5 + i]))
        for i in (0, 1)
    ]  # fmt: skip
    images, labels, triplets = collate_triplets(batch)
    assert images[:, 0, 0, 0].tolist() == [0.0, 10.0, 1.0, 11.0, 2.0, 12.0]  # anchors, positives, negatives
    assert labels.tolist() == [0, 1, 0, 1, 5, 6]
    assert triplets.tolist() == [[0, 1], [2, 3], [4, 5]]
