"""Classifier on the real Tianchi sample: crop counts from its annotations, and the smoke model on the crops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from imagesearch.classifier.data import category_target
from imagesearch.classifier.model import build_classifier
from imagesearch.classifier.train import ClassifierRun
from imagesearch.config import load_config
from imagesearch.data.augment import crop_transform
from imagesearch.data.crops import CropDataset, extract_crops
from imagesearch.data.labels import CATEGORY_INDEX
from imagesearch.data.reader import load_split

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.sample


def test_sample_crops_and_smoke_forward(tianchi_sample: Path, tmp_path: Path) -> None:
    split = load_split(tianchi_sample)
    folder, records = extract_crops(split, tmp_path / "cache", margin=0.1, max_side=128, include_distractors=True)
    # Counted from the JSON files: the 3 present videos (000117, 000134, 000165) have 10 annotated
    # frames each, with 10 + 10 + 10 product boxes and 10 + 0 + 10 distractors; the 59 product
    # images hold 75 product boxes and 11 distractors. The 7 videos without an .mp4 give no crops.
    counts = Counter((r.source, r.instance_id > 0) for r in records)
    assert counts == {("frame", True): 30, ("frame", False): 20, ("image", True): 75, ("image", False): 11}
    frame_videos = Counter(r.video_id for r in records if r.source == "frame" and r.instance_id > 0)
    assert frame_videos == {"000117": 10, "000134": 10, "000165": 10}
    assert {r.item_id for r in records if r.source == "image" and r.instance_id > 0} == set(split.items)
    assert all(r.category == CATEGORY_INDEX[r.label] for r in records)
    assert len({r.label for r in records}) == 12  # the sample's README: 12 of the 23 labels occur

    run = load_config(ClassifierRun, REPO / "configs" / "smoke" / "classifier.yaml")
    products = [r for r in records if r.instance_id > 0]
    dataset = CropDataset(folder, products, crop_transform(run.model.image_size, train=False), category_target)
    torch.manual_seed(0)
    model = build_classifier(run.model).eval()
    logits, targets = [], []
    with torch.no_grad():
        for images, labels in DataLoader(dataset, batch_size=64):
            logits.append(model(images))
            targets.append(labels)
    logits_t, targets_t = torch.cat(logits), torch.cat(targets)
    assert logits_t.shape == (105, 23) and torch.isfinite(logits_t).all()
    assert targets_t.tolist() == [r.category for r in products]
