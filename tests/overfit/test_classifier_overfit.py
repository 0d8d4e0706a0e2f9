"""Overfit one fixed batch with the smoke classifier (frozen random trunk, trainable head)."""

from __future__ import annotations

from pathlib import Path

import torch

from imagesearch.classifier.model import build_classifier
from imagesearch.classifier.train import ClassifierRun, classifier_forward
from imagesearch.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_overfit_one_batch() -> None:
    run = load_config(ClassifierRun, REPO / "configs" / "smoke" / "classifier.yaml")
    torch.manual_seed(0)
    model = build_classifier(run.model)
    s = run.model.image_size
    # 16 crops of 8 categories: a category colour plus noise, so that the frozen random trunk sees
    # distinct inputs; the head has to learn the mapping.
    targets = torch.arange(16) % 8 * 3  # categories 0, 3, ..., 21
    colours = torch.rand(23, 3, 1, 1) * 2 - 1
    images = colours[targets] + 0.5 * torch.randn(16, 3, s, s)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(200):
        loss = classifier_forward(model, (images, targets), torch.device("cpu"))["cls"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < 0.05 * losses[0]:
            break
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1], len(losses))
    with torch.no_grad():  # still in train mode: the head's BatchNorm uses this batch's statistics
        assert (model(images).argmax(1) == targets).all()
