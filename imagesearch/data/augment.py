"""Albumentations pipelines: crop transforms (classifier, embedder) and box-aware detection transforms.

All take RGB uint8 HxWx3 arrays and return float32 tensors normalised with the ImageNet mean and std
that the VGG16 weights expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    """Strengths of the training augmentations (SPEC §3 stage 2); 0 turns one off."""

    brightness: float = 0.2
    contrast: float = 0.2
    hflip: float = 0.5  # probability
    rotate: float = 5.0  # max degrees
    scale: float = 0.1  # +- fraction for crops; detection crops use min_crop_scale
    min_crop_scale: float = 0.6  # detection: the random crop keeps at least this fraction of each side
    min_box_visibility: float = 0.5  # detection: drop a box when less than this fraction stays in the crop
    p: float = 0.5  # probability of each photometric / geometric op
    saturation: float = 0.0  # +- fraction of saturation change (ColorJitter); 0 = off
    hue: float = 0.0  # +- hue shift as a fraction of the colour circle (ColorJitter, <= 0.5); 0 = off
    zoom_out: float = 0.0  # detection: shrink the content by up to this fraction (borders filled); 0 = off


def _photometric(cfg: AugmentConfig) -> list[A.BasicTransform]:
    ops: list[A.BasicTransform] = []
    if cfg.brightness > 0 or cfg.contrast > 0:
        ops.append(A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast, p=cfg.p))
    if cfg.saturation > 0 or cfg.hue > 0:
        # Colour shifts keep a detector from tying "garment" to the few colours of a small training set.
        ops.append(A.ColorJitter(brightness=0, contrast=0, saturation=cfg.saturation, hue=cfg.hue, p=cfg.p))
    return ops


def crop_transform(size: int, train: bool, cfg: AugmentConfig | None = None) -> A.Compose:
    """Transform for garment crops: resize to (size, size), augment in training, normalise, to tensor.

    Returns:
        A callable `t(image=rgb)["image"]` -> float32 tensor (3, size, size).
    """
    cfg = cfg or AugmentConfig()
    ops: list[A.BasicTransform] = [A.Resize(size, size, interpolation=cv2.INTER_LINEAR)]
    if train:
        ops += _photometric(cfg)
        if cfg.hflip > 0:
            ops.append(A.HorizontalFlip(p=cfg.hflip))
        if cfg.rotate > 0 or cfg.scale > 0:
            ops.append(
                A.Affine(
                    scale=(1 - cfg.scale, 1 + cfg.scale),
                    rotate=(-cfg.rotate, cfg.rotate),
                    border_mode=cv2.BORDER_REFLECT_101,
                    p=cfg.p,
                )
            )
    ops += [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]
    return A.Compose(ops)


def detection_transform(
    train: bool, cfg: AugmentConfig | None = None, size: int | None = None, normalize: bool = True
) -> A.Compose:
    """Box-aware transform for detector training: pascal_voc boxes (x1, y1, x2, y2) in pixels.

    Geometric ops move the boxes with the pixels, a random crop keeps each side at >= `min_crop_scale`,
    and boxes that leave the crop below `min_box_visibility` are dropped; the others are clipped to it.
    Call as `t(image=rgb, bboxes=boxes, labels=labels)`.

    Args:
        train: add the random augmentations (else only the resize and the tensor conversion).
        cfg: augmentation strengths.
        size: resize to (size, size) last, boxes included; None keeps the (cropped) size.
        normalize: ImageNet-normalised float32 output; False gives the uint8 image (3, H, W) for a
            model that normalises inside (torchvision's SSD does), a quarter of the bytes to collate.

    Returns:
        A callable giving {"image": tensor (3, H, W), "bboxes": (K, 4) array, "labels": list}.
    """
    cfg = cfg or AugmentConfig()
    ops: list[A.BasicTransform] = []
    if train:
        ops += _photometric(cfg)
        if cfg.hflip > 0:
            ops.append(A.HorizontalFlip(p=cfg.hflip))
        if cfg.rotate > 0 or cfg.zoom_out > 0:
            # rotate_method="ellipse" keeps rotated boxes tight on the garment instead of growing them;
            # zooming out shows garments smaller than the data has them (live-stream frames hold small ones).
            ops.append(
                A.Affine(
                    scale=(1.0 - cfg.zoom_out, 1.0),
                    keep_ratio=True,
                    rotate=(-cfg.rotate, cfg.rotate),
                    rotate_method="ellipse",
                    border_mode=cv2.BORDER_CONSTANT,
                    p=cfg.p,
                )
            )
        if cfg.min_crop_scale < 1:
            ops.append(_box_keeping_crop(cfg))
    if size is not None:
        ops.append(A.Resize(size, size, interpolation=cv2.INTER_LINEAR))
    if normalize:
        ops.append(A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    ops.append(ToTensorV2())
    return A.Compose(
        ops,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["labels"], min_visibility=cfg.min_box_visibility, clip=True
        ),
    )


def _box_keeping_crop(cfg: AugmentConfig) -> A.BasicTransform:
    # A crop by a fraction of the image (not to a fixed pixel size), so frames and 800x800 product
    # images share one pipeline; RandomCropFromBorders keeps at least min_crop_scale of each side.
    limit = (1 - cfg.min_crop_scale) / 2
    return A.RandomCropFromBorders(crop_left=limit, crop_right=limit, crop_top=limit, crop_bottom=limit, p=cfg.p)
