"""Classifier contract: the smoke config builds a model with the promised shapes, loss dict and round trips."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from imagesearch.checkpoint import save_checkpoint
from imagesearch.classifier.model import ClassifierModelConfig, build_classifier, load_classifier
from imagesearch.classifier.train import ClassifierRun, classifier_forward
from imagesearch.config import config_to_dict, load_config

REPO = Path(__file__).resolve().parents[2]


def _smoke() -> ClassifierRun:
    return load_config(ClassifierRun, REPO / "configs" / "smoke" / "classifier.yaml")


def test_smoke_model_outputs() -> None:
    run = _smoke()
    torch.manual_seed(0)
    model = build_classifier(run.model).eval()
    s = run.model.image_size
    x = torch.randn(3, 3, s, s)
    with torch.no_grad():
        feats, logits = model.forward_features(x), model(x)
    assert feats.shape == (3, model.embed_dim, s // 32, s // 32) and feats.dtype == torch.float32
    assert model.embed_dim == model.fc.in_features == 6 * round(256 * run.model.inception_width_mult)
    assert logits.shape == (3, 23) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    model.train()
    losses = classifier_forward(model, (x, torch.tensor([0, 5, 22])), torch.device("cpu"))
    assert set(losses) == {"cls"} and losses["cls"].ndim == 0 and math.isfinite(losses["cls"].item())
    losses["cls"].backward()
    assert model.fc.weight.grad is not None and all(p.grad is None for p in model.trunk.parameters())


def test_full_size_config_builds() -> None:
    run = load_config(ClassifierRun, REPO / "configs" / "classifier" / "vgg16bn_inceptionc.yaml",
                      ["model.weights=none"])  # fmt: skip
    model = build_classifier(run.model).eval()
    assert model.embed_dim == 1536 and len(model.blocks) == 3 and model.fc.out_features == 23
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1536, 2, 2)


def test_state_dict_and_checkpoint_round_trip(tmp_path: Path) -> None:
    run = _smoke()
    torch.manual_seed(0)
    model = build_classifier(run.model)
    with torch.no_grad():  # non-trivial BN statistics in the head
        model.train()(torch.randn(8, 3, 64, 64))
    model.eval()
    torch.manual_seed(1)
    other = build_classifier(run.model)
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(other.eval()(x), expected, rtol=0, atol=0)
    path = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "config": config_to_dict(run)})
    loaded, cfg = load_classifier(path)
    assert cfg == run.model and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_load_classifier_ignores_missing_init_files(tmp_path: Path) -> None:
    # A checkpoint trained from a weights file (ImageNet, or a detector's trunk.pth) still loads once it is gone.
    cfg = dataclasses.replace(ClassifierModelConfig(width_mult=0.125, inception_width_mult=0.0625),
                              weights="/gone/trunk.pth")  # fmt: skip
    model = build_classifier(dataclasses.replace(cfg, weights="none"))
    path = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "config": {"model": config_to_dict(cfg)}})
    _, stored = load_classifier(path)
    assert stored.weights == "/gone/trunk.pth"


def test_an_older_checkpoint_with_trunk_checkpoint_still_loads(tmp_path: Path) -> None:
    # Written before the detector handed its trunk over as a file: the retired key only named an init file.
    cfg = ClassifierModelConfig(width_mult=0.125, inception_width_mult=0.0625)
    model = build_classifier(cfg)
    stored = {**config_to_dict(cfg), "trunk_checkpoint": "/gone/detector.pt"}
    path = save_checkpoint(tmp_path / "old.pt", {"model": model.state_dict(), "config": {"model": stored}})
    loaded, got = load_classifier(path)
    assert got == cfg
    bad = save_checkpoint(tmp_path / "bad.pt", {"model": model.state_dict(), "config": {"model": {**stored, "typo": 1}}})
    with pytest.raises(ValueError, match="typo"):
        load_classifier(bad)
