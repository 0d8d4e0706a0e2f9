"""Detector samples from a hand-made split: frame cache at the right indices, boxes, labels, collate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import imagesearch.data.video as video_module
from imagesearch.data.augment import AugmentConfig, detection_transform
from imagesearch.data.labels import CATEGORY_INDEX
from imagesearch.data.reader import load_split
from imagesearch.detector.data import DetectionDataset, build_samples, collate

W, H, FRAMES = 64, 48, 30


def _ann(label: str, box: list[int], instance_id: int) -> dict[str, Any]:
    return {"label": label, "viewpoint": 0, "display": 1, "instance_id": instance_id, "box": box}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def make_split(root: Path) -> Path:
    """Item 000001 (2 images), video 000001 (30 frames, frame i is grey 8*i; frames 0, 10, 20 annotated,
    20 with no garment) and video 000002 (annotated, .mp4 missing)."""
    anns = {0: [_ann("短袖上衣", [10, 10, 50, 70], 100101)], 1: [_ann("短袖上衣", [5, 5, 40, 40], 100101),
            _ann("长裤", [40, 20, 78, 79], 0)]}  # fmt: skip
    for k, boxes in anns.items():
        (root / "image" / "000001").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "image" / "000001" / f"{k}.jpg"), np.full((80, 80, 3), 128, np.uint8))
        _write_json(root / "image_annotation" / "000001" / f"{k}.json",
                    {"item_id": "000001", "img_name": f"{k}.jpg", "annotations": boxes})  # fmt: skip
    (root / "video").mkdir(parents=True)
    writer = cv2.VideoWriter(str(root / "video" / "000001.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 20, (W, H))
    for i in range(FRAMES):
        writer.write(np.full((H, W, 3), 8 * i, np.uint8))
    writer.release()
    frames = [
        {"frame_index": 0, "annotations": [_ann("短袖上衣", [4, 4, 30, 40], 100101)]},
        {"frame_index": 10, "annotations": [_ann("短袖上衣", [20, 8, 60, 44], 100101), _ann("短裙", [0, 0, 9, 9], 0)]},
        {"frame_index": 20, "annotations": []},
    ]
    _write_json(root / "video_annotation" / "000001.json", {"video_id": "000001", "frames": frames})
    _write_json(root / "video_annotation" / "000002.json", {"video_id": "000002", "frames": frames[:1]})
    return root


@pytest.fixture()
def split_root(tmp_path: Path) -> Path:
    return make_split(tmp_path / "split")


def test_samples_cover_frames_and_images_with_every_garment(split_root: Path, tmp_path: Path) -> None:
    split = load_split(split_root)
    samples = build_samples(split, tmp_path / "cache", progress=False)
    assert [(s.source, s.frame_index, s.img_name) for s in samples] == [
        ("frame", 0, ""), ("frame", 10, ""), ("image", -1, "0.jpg"), ("image", -1, "1.jpg")
    ]  # fmt: skip
    frame10, image1 = samples[1], samples[3]
    assert frame10.boxes == ((20, 8, 60, 44), (0, 0, 9, 9))  # the distractor (instance 0) is a garment too
    assert frame10.categories == (CATEGORY_INDEX["短袖上衣"], CATEGORY_INDEX["短裙"])
    assert image1.categories == (CATEGORY_INDEX["短袖上衣"], CATEGORY_INDEX["长裤"]) and image1.item_id == "000001"
    # Frame 20 has no garment: a negative only on request. Video 000002 has no file: left out.
    with_empty = build_samples(split, tmp_path / "cache", keep_empty=True, progress=False)
    assert [s.frame_index for s in with_empty if s.source == "frame"] == [0, 10, 20]
    assert with_empty[2].boxes == () and with_empty[2].categories == ()


def test_frames_are_decoded_once_at_their_index(split_root: Path, tmp_path: Path, monkeypatch) -> None:
    split = load_split(split_root)
    samples = build_samples(split, tmp_path / "cache", keep_empty=True, progress=False)
    for s in samples[:3]:
        grey = cv2.imread(s.path).mean()
        assert abs(grey - 8 * s.frame_index) < 3, (s.frame_index, grey)  # frame i is grey 8*i

    # A second build reads the cache: decoding would fail now.
    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(video_module, "read_frames", no_decoding)
    again = build_samples(split, tmp_path / "cache", keep_empty=True, progress=False)
    assert [s.path for s in again] == [s.path for s in samples]
    # A changed video file (new mtime) gets a new cache folder, so it is decoded again.
    clip = split_root / "video" / "000001.mp4"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        build_samples(load_split(split_root), tmp_path / "cache", progress=False)


def test_dataset_targets_and_collate(split_root: Path, tmp_path: Path) -> None:
    samples = build_samples(load_split(split_root), tmp_path / "cache", progress=False)
    transform = detection_transform(False, AugmentConfig(), size=32, normalize=False)
    garment = DetectionDataset(samples, transform, "garment")
    image, target = garment[1]  # frame 10 of a 64 x 48 clip, resized to 32 x 32
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 32, 32)
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 8 * 32 / 48, 30.0, 44 * 32 / 48],
                                                              [0.0, 0.0, 4.5, 9 * 32 / 48]]))  # fmt: skip
    assert target["labels"].tolist() == [1, 1] and target["labels"].dtype == torch.int64
    category = DetectionDataset(samples, transform, "category")
    assert category[3][1]["labels"].tolist() == [CATEGORY_INDEX["短袖上衣"] + 1, CATEGORY_INDEX["长裤"] + 1]
    images, targets = collate([garment[i] for i in range(4)])
    assert tuple(images.shape) == (4, 3, 32, 32) and [len(t["boxes"]) for t in targets] == [1, 2, 1, 2]


def test_unreadable_cached_image_names_the_file(split_root: Path, tmp_path: Path) -> None:
    samples = build_samples(load_split(split_root), tmp_path / "cache", progress=False)
    Path(samples[0].path).write_bytes(b"not a jpeg")
    dataset = DetectionDataset(samples, detection_transform(False, size=32, normalize=False), "garment")
    with pytest.raises(OSError, match=samples[0].path):
        dataset[0]


def test_workers_draw_distinct_reproducible_augmentations(split_root: Path, tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from imagesearch.detector.data import seed_worker_transform

    sample = build_samples(load_split(split_root), tmp_path / "cache", progress=False)[2]  # product image 0
    transform = detection_transform(True, AugmentConfig(brightness=0.5, contrast=0.5, p=1.0), size=32, normalize=False)
    dataset = DetectionDataset([sample] * 4, transform, "garment")

    def batches(seed: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate,
                            generator=torch.Generator().manual_seed(seed), worker_init_fn=seed_worker_transform)  # fmt: skip
        return [images for images, _ in loader]

    first = batches(0)
    # Batches 0 and 1 come from different workers: without their own seeds they would be equal.
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, batches(0), strict=True))  # same seed, same images


def test_a_budget_is_drawn_before_decoding(split_root: Path, tmp_path: Path, monkeypatch) -> None:
    # A validation budget: the draw is made among the candidates first, and only the drawn frames are decoded.
    split = load_split(split_root)
    decoded: list[list[int]] = []
    real = video_module.read_frames

    def counting(path, indices, *args, **kwargs):
        decoded.append(list(indices))
        return real(path, indices, *args, **kwargs)

    monkeypatch.setattr(video_module, "read_frames", counting)
    everything = build_samples(split, tmp_path / "all", keep_empty=True, progress=False)
    assert sorted(i for call in decoded for i in call) == [0, 10, 20]
    keys = lambda samples: [(s.source, s.video_id, s.frame_index, s.img_name) for s in samples]  # noqa: E731
    for seed in range(6):
        decoded.clear()
        drawn = build_samples(split, tmp_path / f"b{seed}", keep_empty=True, progress=False, budget=2, seed=seed)
        assert len(drawn) == 2 and set(keys(drawn)) <= set(keys(everything))
        assert sorted(i for call in decoded for i in call) == sorted(s.frame_index for s in drawn if s.source == "frame")
        assert keys(drawn) == keys(build_samples(split, tmp_path / f"b{seed}", keep_empty=True, progress=False, budget=2, seed=seed))  # fmt: skip
