"""Box-aware detection augmentations: boxes stay inside the image and on the garment's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagesearch.data.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, detection_transform

GARMENT_RGB = (220, 30, 30)
BOX = (60.0, 50.0, 140.0, 190.0)  # x1 y1 x2 y2 of the solid garment in a 200 (w) x 240 (h) image


def _garment_image() -> np.ndarray:
    image = np.full((240, 200, 3), 60, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    image[y1:y2, x1:x2] = GARMENT_RGB
    return image


def test_train_transform_keeps_boxes_inside_and_on_the_garment() -> None:
    # Every op fires (p=1) with strong settings; 40 seeds cover flips, both rotation signs, zooms and crops.
    cfg = AugmentConfig(
        brightness=0.2, contrast=0.2, saturation=0.4, hue=0.1, hflip=0.5, rotate=5.0, zoom_out=0.4,
        min_crop_scale=0.6, p=1.0,
    )  # fmt: skip
    transform = detection_transform(True, cfg, size=128, normalize=False)
    image, kept = _garment_image(), 0
    for seed in range(40):
        transform.set_random_seed(seed)
        out = transform(image=image, bboxes=np.array([BOX]), labels=[1])
        img = out["image"]
        assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 128, 128)
        boxes = np.asarray(out["bboxes"]).reshape(-1, 4)
        assert len(boxes) == len(out["labels"]) <= 1
        if not len(boxes):
            continue
        kept += 1
        x1, y1, x2, y2 = boxes[0]
        assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128, boxes
        rgb = img.permute(1, 2, 0).numpy().astype(int)
        # The garment is the only coloured thing: grey background and black borders stay unsaturated
        # under every colour op, whatever hue the garment is shifted to.
        garment = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
        inside = np.zeros_like(garment)
        inside[int(round(y1)) : int(round(y2)), int(round(x1)) : int(round(x2))] = True
        # The box is filled by the garment and holds (almost) all of it; rotation and resampling blur edges.
        assert garment[inside].mean() > 0.85, (seed, boxes, garment[inside].mean())
        assert (garment & inside).sum() / garment.sum() > 0.9, seed
    assert kept >= 35  # the crop keeps >= 60% of each side, so the garment (40% x 58%) is rarely cut away


def test_eval_transform_only_resizes() -> None:
    image = _garment_image()
    out = detection_transform(False, AugmentConfig(), size=100, normalize=False)(
        image=image, bboxes=np.array([BOX]), labels=[3]
    )
    # x scales by 100/200, y by 100/240.
    np.testing.assert_allclose(np.asarray(out["bboxes"]), [[30.0, 50 * 100 / 240, 70.0, 190 * 100 / 240]], rtol=1e-5)
    assert list(out["labels"]) == [3]
    assert tuple(out["image"][:, 50, 50].tolist()) == GARMENT_RGB  # inside the garment, untouched by resizing


@pytest.mark.filterwarnings("ignore:Got processor for bboxes")  # no geometric op at all: nothing to move
def test_normalised_output_matches_imagenet_statistics() -> None:
    image = _garment_image()
    out = detection_transform(False, AugmentConfig(), size=None)(image=image, bboxes=np.zeros((0, 4)), labels=[])
    expected = [(GARMENT_RGB[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in range(3)]
    assert out["image"].dtype == torch.float32 and tuple(out["image"].shape) == (3, 240, 200)
    torch.testing.assert_close(out["image"][:, 100, 100], torch.tensor(expected), rtol=1e-5, atol=1e-5)
    assert len(out["bboxes"]) == 0  # an image without garments passes through (a negative sample)


def test_zoom_out_shrinks_garments_about_the_centre() -> None:
    cfg = AugmentConfig(brightness=0, contrast=0, hflip=0, rotate=0, zoom_out=0.5, min_crop_scale=1.0, p=1.0)
    transform = detection_transform(True, cfg, size=None, normalize=False)
    centre = np.array([100.0, 120.0])  # of the 200 x 240 image
    x1, y1, x2, y2 = BOX
    scales = []
    for seed in range(10):
        transform.set_random_seed(seed)
        (box,) = np.asarray(transform(image=_garment_image(), bboxes=np.array([BOX]), labels=[1])["bboxes"])
        s = (box[2] - box[0]) / (x2 - x1)
        assert 0.5 - 1e-3 <= s <= 1 + 1e-3
        assert abs((box[3] - box[1]) / (y2 - y1) - s) < 0.02  # the same scale on both axes
        # A scale s about the centre c maps a point p to c + s (p - c).
        np.testing.assert_allclose(box[:2], centre + s * (np.array([x1, y1]) - centre), atol=1.0)
        scales.append(s)
    assert np.ptp(scales) > 0.1  # the zoom is random
