"""Overfit one fixed synthetic batch with the smoke-size detector: the loss falls below 10% of its start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagesearch.detector.model import DetectorModelConfig, build_detector

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (tests/conftest.py)


def _fixed_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    # Four noisy images, each with one or two solid "garments" of random colour and size.
    rng = np.random.default_rng(0)
    images, targets = [], []
    for n_boxes in (1, 2, 1, 2):
        image = rng.uniform(0.3, 0.5, (3, SIZE, SIZE)).astype(np.float32)
        boxes = []
        for _ in range(n_boxes):
            w, h = rng.integers(14, 40, 2)
            x1, y1 = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            image[:, y1 : y1 + h, x1 : x1 + w] = rng.uniform(0, 1, (3, 1, 1))
            boxes.append([x1, y1, x1 + w, y1 + h])
        images.append(torch.from_numpy(image))
        targets.append(
            {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.ones(n_boxes, dtype=torch.int64)}
        )
    return images, targets


def test_smoke_detector_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = build_detector(DetectorModelConfig(size=SIZE, width_mult=1 / 8)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    images, targets = _fixed_batch()
    losses = []
    for _ in range(150):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() < 0.05 * losses[0]:
            break
    assert np.isfinite(losses).all()
    assert min(losses[-5:]) < 0.1 * losses[0], (losses[0], losses[-5:])
