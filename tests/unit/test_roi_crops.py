"""Device crops (roi_align) against the CPU crop path: exact cases by hand, and a real image within tolerances."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imagesearch.data.crops import cut_crop, expand_box
from imagesearch.data.reader import load_split
from imagesearch.evaluation.models import build_extractor
from imagesearch.features.extract import CropFeatures, FeatureConfig, LBPConfig
from imagesearch.features.lbp import lbp_histograms
from imagesearch.features.roi import expand_boxes, gray_levels, lbp_from_crops, roi_crops


def _rois(boxes: np.ndarray, margin: float, w: int, h: int) -> torch.Tensor:
    grown = expand_boxes(torch.from_numpy(boxes), margin, w, h)
    return torch.cat([torch.zeros(len(grown), 1, dtype=torch.float64), grown], 1)


def test_expand_boxes_is_expand_box():
    rng = np.random.default_rng(0)
    boxes = np.concatenate(
        [rng.uniform(-20, 120, (50, 2)), rng.uniform(-20, 120, (50, 2))], axis=1
    )  # some outside the image, some inverted or degenerate
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    boxes[0] = (10, 10, 30, 50)  # expand_box's doctest: (8, 6, 32, 54)
    got = expand_boxes(torch.from_numpy(boxes), 0.1, 100, 90).numpy()
    want = np.array([expand_box(b, 0.1, 100, 90) for b in boxes], np.float64)
    np.testing.assert_array_equal(got, want)
    assert tuple(got[0]) == (8, 6, 32, 54)


def test_roi_align_copies_exact_pixels_and_averages_2x2_blocks():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    t = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    # A 32x32 box to 32x32: one sample per bin, at each pixel's centre, so the pixels themselves.
    same = roi_crops(t, _rois(np.array([[8.0, 4.0, 40.0, 36.0]]), 0.0, 80, 64), 32)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(same, image[4:36, 8:40], atol=1e-9)
    # A 64x64 box to 32x32: 2x2 samples per bin, again at pixel centres: INTER_AREA's exact 2x shrink.
    half = roi_crops(t, _rois(np.array([[16.0, 0.0, 80.0, 64.0]]), 0.0, 80, 64), 32)[0].permute(1, 2, 0).numpy()
    block = image[:, 16:80].astype(np.float64).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(half, block, atol=1e-9)
    area = cv2.resize(image[:, 16:80], (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(half.round() - area).max() <= 1  # cv2 rounds the same means to uint8


def test_gray_levels_and_lbp_match_cv2_and_the_cpu_histograms():
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)
    t = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    want = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops])
    np.testing.assert_array_equal(gray_levels(t).numpy(), want)
    np.testing.assert_allclose(
        lbp_from_crops(t, (2, 3), 8, 1.0).numpy(), lbp_histograms(list(crops), grid=(2, 3), resize=None), atol=1e-6
    )


def _tiny_extractor(crops: str) -> CropFeatures:
    torch.manual_seed(0)  # the same random weights for both paths
    cfg = FeatureConfig(weights="none", width_mult=0.125, image_size=64, device="cpu", crops=crops)
    return build_extractor(FeatureConfig(**{**vars(cfg), "lbp": LBPConfig(resize=64)}))


def test_real_image_crops_and_features_agree_with_the_cpu_path(tianchi_sample: Path):
    """Tolerances: both paths resample the same pixels (bilinear / area) and differ only in the weights
    of neighbouring pixels, so crops differ by a few grey levels (measured on the sample: 1.7 on
    average, 4.0 for the worst crop, margin 0.1); LBP histograms by 0.1 at most against ~0.35-0.47
    between different garments; global features (random tiny VGG) by cosine > 0.99."""
    split = load_split(tianchi_sample)
    images = split.product_images()[:6]
    pictures = [cv2.cvtColor(cv2.imread(str(im.path)), cv2.COLOR_BGR2RGB) for im in images]
    owners = np.array([j for j, im in enumerate(images) for _ in im.boxes])
    boxes = np.array([b.xyxy for im in images for b in im.boxes], np.float64)
    for j, box in zip(owners, boxes, strict=True):
        h, w = pictures[j].shape[:2]
        t = torch.from_numpy(pictures[j]).permute(2, 0, 1)[None].float()
        roi = roi_crops(t, _rois(box[None], 0.1, w, h), 112)[0].permute(1, 2, 0).numpy()
        cpu = cv2.resize(cut_crop(pictures[j], box, 0.1, 256), (112, 112), interpolation=cv2.INTER_LINEAR)
        assert np.abs(roi - cpu).mean() < 6.0
    roi_ex, cpu_ex = _tiny_extractor("roi_align"), _tiny_extractor("cpu")
    assert (roi_ex.crop_path, cpu_ex.crop_path) == ("roi_align", "cpu")
    assert roi_ex.key_config() != cpu_ex.key_config()  # a gallery of one path never serves the other
    a = roi_ex.box_parts(pictures, owners, boxes, 0.1, 256)
    b = cpu_ex.box_parts(pictures, owners, boxes, 0.1, 256)
    cos = (a["global"] * b["global"]).sum(1)
    assert cos.min() > 0.99, cos
    lbp_gap = np.linalg.norm(a["lbp"] - b["lbp"], axis=1)
    assert lbp_gap.max() < 0.15, lbp_gap
    fused_a, fused_b = roi_ex.fuse(a, 0.2), cpu_ex.fuse(b, 0.2)
    nearest = ((fused_a[:, None] - fused_b[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == np.arange(len(boxes))).mean() >= 0.9  # each crop's nearest other-path twin is itself


def test_numpy_only_feature_takes_the_cpu_path_and_skips_unused_parts():
    cfg = FeatureConfig(weights="none", lbp=LBPConfig(resize=16))
    ex = CropFeatures(lambda crops, progress=False: np.ones((len(crops), 2), np.float32) / np.sqrt(2), cfg, [])
    assert ex.crop_path == "cpu" and ex.key_config()["crops"] == "cpu" and ex.needed_parts == ("global",)
    image = np.zeros((40, 30, 3), np.uint8)
    parts = ex.box_parts([image], np.array([0, 0]), np.array([[0, 0, 10, 10], [5, 5, 25, 35]], float), 0.1, 256, ("global",))  # fmt: skip
    assert set(parts) == {"global"} and parts["global"].shape == (2, 2)
    np.testing.assert_allclose(ex.fuse(parts), parts["global"])
    with pytest.raises(ValueError, match="lbp_weight"):
        ex.fuse(parts, lbp_weight=0.5)
    with pytest.raises(ValueError, match="features.crops"):
        build_extractor(FeatureConfig(weights="none", crops="gpu"))
    with pytest.raises(ValueError, match="features.amp"):
        build_extractor(FeatureConfig(weights="none", amp="fp8"))
    # The CPU always runs fp32 whatever `amp` says, and the key records the dtype in effect.
    tiny = FeatureConfig(weights="none", width_mult=0.125, image_size=32, device="cpu", amp="bf16")
    assert build_extractor(tiny).key_config()["amp"] == "none"
