"""Detector contract: losses in train mode, boxes in eval mode, negatives, weights, and the batched API."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection import ssd300_vgg16

from imagesearch.backbones import WeightsError, build_vgg16_features
from imagesearch.detector.inference import Detector
from imagesearch.detector.model import DetectorModelConfig, build_detector

SMOKE = DetectorModelConfig(size=96, width_mult=1 / 8, detections_per_img=50)


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (tests/conftest.py)


@pytest.fixture()
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector(SMOKE)


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 70, 130, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 60.0], [50.0, 10.0, 125.0, 65.0]]), "labels": torch.tensor([1, 1])},
    ]
    return images, targets


def test_train_mode_returns_finite_losses(model: torch.nn.Module) -> None:
    model.train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(v.ndim == 0 and math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.head.regression_head.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_image_without_boxes_trains(model: torch.nn.Module) -> None:
    # torchvision's negative-sample case: no positives, so no box loss; the batch still back-propagates.
    model.train()
    images, targets = _batch()
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    losses = model(images[:1], [empty])
    assert losses["bbox_regression"].item() == 0.0 and math.isfinite(losses["classification"].item())
    mixed = model([images[0], images[1]], [empty, targets[1]])
    sum(mixed.values()).backward()
    assert all(math.isfinite(v.item()) for v in mixed.values()) and mixed["bbox_regression"].item() > 0


def test_eval_mode_boxes_lie_inside_each_image(model: torch.nn.Module) -> None:
    model.eval()
    images, _ = _batch()
    with torch.no_grad():
        outputs = model(images)
    for image, out in zip(images, outputs, strict=True):
        h, w = image.shape[-2:]
        boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
        assert 0 < len(boxes) <= SMOKE.detections_per_img and boxes.shape[1] == 4
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert ((scores > SMOKE.score_thresh) & (scores <= 1)).all() and (labels == 1).all()
        assert labels.dtype == torch.int64


def test_state_dict_round_trip_gives_identical_outputs(model: torch.nn.Module, tmp_path: Path) -> None:
    model.eval()
    torch.save(model.state_dict(), tmp_path / "det.pt")
    torch.manual_seed(123)  # a different random init, then overwritten
    other = build_detector(SMOKE).eval()
    other.load_state_dict(torch.load(tmp_path / "det.pt", weights_only=True))
    images, _ = _batch()
    with torch.no_grad():
        a, b = model(images), other(images)
    for x, y in zip(a, b, strict=True):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)


def test_trunk_weights_from_a_local_file(tmp_path: Path) -> None:
    trunk = build_vgg16_features(width_mult=1.0)
    path = tmp_path / "vgg16_features.pth"
    torch.save({k: v for k, v in trunk.state_dict().items()}, path)
    model = build_detector(DetectorModelConfig(size=96, weights=str(path), freeze_blocks=5))
    torch.testing.assert_close(model.backbone.features[0].weight, trunk[0].weight)  # conv1_1
    conv5_3 = [m for m in model.backbone.extra[0] if isinstance(m, torch.nn.Conv2d)][2]
    torch.testing.assert_close(conv5_3.weight, trunk[28].weight)
    # A file of another network fails, listing its missing and unexpected keys.
    bad = {k: v for k, v in trunk.state_dict().items() if not k.startswith("28.")}
    bad["30.weight"] = torch.zeros(3)
    torch.save(bad, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match=r"missing keys \(2\): 28\.weight, 28\.bias.*unexpected keys \(1\): 30\."):
        build_detector(DetectorModelConfig(size=96, weights=str(tmp_path / "wrong.pth")))


def _leaves(module: torch.nn.Module) -> list[str]:
    return [repr(m) for m in module.modules() if not list(m.children())]


def test_layout_equals_torchvision_ssd300() -> None:
    # At 300 without BatchNorm ours is torchvision's ssd300_vgg16: the same layers in the same order
    # (kernels, strides, paddings, dilations, pool3's ceil mode) and the same state-dict keys and shapes.
    with torch.device("meta"):  # layout only: nothing is allocated or initialised
        theirs = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=2)
        ours = build_detector(DetectorModelConfig(size=300, extra_batch_norm=False))
    assert _leaves(ours.backbone) == _leaves(theirs.backbone)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}  # same keys, same shapes
    assert ours.anchor_generator.scales == theirs.anchor_generator.scales
    assert ours.anchor_generator.aspect_ratios == theirs.anchor_generator.aspect_ratios
    assert ours.anchor_generator.steps == theirs.anchor_generator.steps
    assert ours.backbone.feature_sizes == [38, 19, 10, 5, 3, 1]


def test_detector_matches_the_standard_ssd_path(model: torch.nn.Module) -> None:
    # Detector skips SSD.transform (batched resize + normalise) and post-processes by its own rule, which
    # for one foreground class and SSD's own settings is torchvision's: boxes must equal SSD.forward's.
    from imagesearch.detector.inference import DetectionConfig

    model.eval()
    ssd_rule = DetectionConfig(min_score=model.score_thresh, nms_iou=model.nms_thresh, max_per_image=model.detections_per_img)  # fmt: skip
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((120, 68, 3), (96, 96, 3), (120, 68, 3))]
    with torch.no_grad():
        expected = model([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    got = Detector(model, post=ssd_rule).detect(frames)
    assert len(got) == 3
    for g, e in zip(got, expected, strict=True):
        assert g["boxes"].dtype == np.float32 and g["labels"].dtype == np.int64
        np.testing.assert_allclose(g["boxes"], e["boxes"].numpy(), atol=1e-3)
        np.testing.assert_allclose(g["scores"], e["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(g["labels"], e["labels"].numpy())
    assert Detector(model).detect([]) == []
    with pytest.raises(ValueError, match="frame 1: expected an RGB uint8"):
        Detector(model).detect([frames[0], frames[1].astype(np.float32)])


def test_detector_from_checkpoint(model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": {"model": asdict(SMOKE)}, "epoch": 1}, path)
    frame = np.random.default_rng(1).integers(0, 256, (60, 40, 3), dtype=np.uint8)
    loaded = Detector.from_checkpoint(path).detect([frame])[0]
    direct = Detector(model).detect([frame])[0]
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(loaded[key], direct[key])
    assert loaded["boxes"][:, 2].max() <= 40 and loaded["boxes"][:, 3].max() <= 60  # the frame's own pixels
    torch.save({"model": model.state_dict(), "config": {}}, path)
    with pytest.raises(ValueError, match=r"best.pt: not a training checkpoint of this stage \(no config\['model'\]"):
        Detector.from_checkpoint(path)


def test_post_processing_thresholds_suppresses_caps_and_keeps_the_best(model: torch.nn.Module) -> None:
    # Head outputs written by hand: zero regression (each candidate box is its default box) and background
    # logits everywhere but on five chosen default boxes, whose garment scores are set exactly.
    from torchvision.ops import box_iou, clip_boxes_to_image

    from imagesearch.detector.inference import DetectionConfig

    det = Detector(model, post=DetectionConfig(min_score=0.5, nms_iou=0.5, max_per_image=2))
    anchors = clip_boxes_to_image(det._anchors(), det.size)
    iou = box_iou(anchors, anchors)
    a = int((anchors[:, 2] - anchors[:, 0]).argmax())  # a large box
    b = int(torch.nonzero((iou[a] > 0.6) & (torch.arange(len(anchors)) != a))[0, 0])  # overlaps a
    far = torch.nonzero(iou[a] < 0.05).squeeze(1)
    c = int(far[0])
    d = int(next(i for i in far.tolist() if iou[c, i] < 0.05 and i != c))
    e = int(next(i for i in far.tolist() if iou[c, i] < 0.05 and iou[d, i] < 0.05 and i not in (c, d)))
    probability = {a: 0.9, b: 0.8, c: 0.7, d: 0.6, e: 0.4}
    logits = torch.zeros(len(anchors), 2)
    logits[:, 0] = 10.0  # background: garment probability ~4.5e-5
    for i, p in probability.items():
        logits[i, 0], logits[i, 1] = 0.0, math.log(p / (1 - p))
    regression = torch.zeros(len(anchors), 4)
    boxes, scores, labels = det._postprocess(regression, logits, keep_best=False)
    # b falls to NMS (IoU > 0.5 with the better a), e to the score threshold, d to the cap of 2.
    torch.testing.assert_close(boxes, anchors[[a, c]])
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7]))
    assert labels.tolist() == [1, 1]
    det.post = DetectionConfig(min_score=0.95, nms_iou=0.5, max_per_image=2)
    assert det._postprocess(regression, logits, keep_best=False)[0].shape == (0, 4)
    best, best_score, _ = det._postprocess(regression, logits, keep_best=True)  # the gallery's rule
    torch.testing.assert_close(best, anchors[[a]])
    torch.testing.assert_close(best_score, torch.tensor([0.9]))
