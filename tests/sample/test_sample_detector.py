"""The detector's data on the real sample: every garment box, frames decoded at their index, one training step."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imagesearch.data.augment import AugmentConfig, detection_transform
from imagesearch.data.reader import load_split
from imagesearch.detector.data import DetectionDataset, DetectionSample, build_samples, collate
from imagesearch.detector.model import DetectorModelConfig, build_detector
from imagesearch.detector.train import detector_forward

pytestmark = [pytest.mark.sample, pytest.mark.usefixtures("one_thread")]

PRESENT = ["000117", "000134", "000165"]


@pytest.fixture(scope="module")
def samples(tianchi_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> list[DetectionSample]:
    cache = tmp_path_factory.mktemp("detector_frames")
    return build_samples(load_split(tianchi_sample, strict=True), cache, workers=2, progress=False)


def _annotation_counts(root: Path) -> tuple[int, int]:
    # Counted from the JSON files directly, independently of the reader.
    frame_boxes = sum(
        len(frame["annotations"])
        for vid in PRESENT
        for frame in json.loads((root / "video_annotation" / f"{vid}.json").read_text(encoding="utf-8"))["frames"]
    )
    image_boxes = sum(
        len(json.loads(p.read_text(encoding="utf-8"))["annotations"]) for p in root.glob("image_annotation/*/*.json")
    )
    return frame_boxes, image_boxes


def test_every_annotated_garment_is_a_sample_box(samples: list[DetectionSample], tianchi_sample: Path) -> None:
    frames = [s for s in samples if s.source == "frame"]
    images = [s for s in samples if s.source == "image"]
    # 3 present videos x frames 0, 40, ..., 360; the 7 missing videos are left out; all 59 product images.
    assert sorted({s.video_id for s in frames}) == PRESENT
    assert [s.frame_index for s in frames if s.video_id == "000134"] == list(range(0, 400, 40))
    assert len(frames) == 30 and len(images) == 59
    frame_boxes, image_boxes = _annotation_counts(tianchi_sample)
    assert sum(len(s.boxes) for s in frames) == frame_boxes
    assert sum(len(s.boxes) for s in images) == image_boxes


def test_cached_frames_are_the_annotated_frames(samples: list[DetectionSample], tianchi_sample: Path) -> None:
    # Independent decode: OpenCV from the start, frame by frame, without seeking.
    cap = cv2.VideoCapture(str(tianchi_sample / "video" / "000165.mp4"))
    decoded = {}
    for index in range(361):
        ok, bgr = cap.read()
        assert ok, index
        if index in (0, 40, 320, 360):
            decoded[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    cap.release()
    cached = {s.frame_index: s for s in samples if s.video_id == "000165"}
    for index in (40, 360):
        rgb = cv2.cvtColor(cv2.imread(cached[index].path), cv2.COLOR_BGR2RGB).astype(np.float32)
        assert rgb.shape == (960, 540, 3)
        same = np.abs(rgb - decoded[index]).mean()
        other = np.abs(rgb - decoded[index - 40]).mean()
        assert same < 2.0 and other > 2 * same, (index, same, other)  # JPEG q95 vs a different frame


def test_one_training_step_on_a_real_batch(samples: list[DetectionSample]) -> None:
    torch.manual_seed(0)
    dataset = DetectionDataset(
        samples, detection_transform(True, AugmentConfig(), size=128, normalize=False), "garment"
    )
    frames = [i for i, s in enumerate(samples) if s.source == "frame"][:2]
    images = [i for i, s in enumerate(samples) if s.source == "image"][:2]
    batch = collate([dataset[i] for i in frames + images])
    assert tuple(batch[0].shape) == (4, 3, 128, 128)
    model = build_detector(DetectorModelConfig(size=128, width_mult=1 / 8)).train()
    losses = detector_forward(model, batch, torch.device("cpu"))
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and total.item() > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
