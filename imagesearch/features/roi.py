"""Garment crops cut on the device in one batched call (torchvision `roi_align`), and their LBP input.

The CPU path (`data.crops.cut_crop` per box, then albumentations' resize per crop) costs a Python
call, an allocation and a cv2 resize per box. Here all boxes of a stack of same-sized images go through
one `torchvision.ops.roi_align` call straight to the model's input size:

- boxes are grown and clipped exactly as `expand_box` does (integer pixel bounds [x1, x2) x [y1, y2));
- `aligned=True` puts pixel i's centre at i + 0.5, so the continuous box [x1, x2] covers exactly
  the pixels x1 .. x2 - 1 that `cut_crop` slices;
- `sampling_ratio=-1` averages ceil(box side / output side) bilinear samples per output bin along each
  axis: an area average when shrinking (what `cut_crop`'s INTER_AREA does) and plain bilinear
  interpolation when enlarging (what the crop transform's INTER_LINEAR does).

The two paths therefore differ only by resampling details (a few grey levels on average; see
tests/unit/test_roi_crops.py). Gallery and queries must use the same path: the choice
(`features.crops`) is part of the gallery cache key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from imagesearch.data.augment import IMAGENET_MEAN, IMAGENET_STD
from imagesearch.features.lbp import grid_histograms, lbp_codes_batch

__all__ = [
    "CROP_PATHS",
    "expand_boxes",
    "gray_levels",
    "imagenet_normalise",
    "lbp_from_crops",
    "roi_crops",
    "roi_parts",
]

CROP_PATHS = ("roi_align", "cpu")
IMAGES_PER_STACK = 16  # images stacked (as float) per upload: bounds memory on any device

# cv2's fixed-point RGB -> grey for uint8 (ITU-R 601 luma with 15 fractional bits, opencv 4.x), so
# device grey levels equal `cv2.cvtColor(rgb, COLOR_RGB2GRAY)` (checked on 200k random pixels).
_GRAY_WEIGHTS = (9798, 19235, 3735)
_GRAY_SHIFT = 15


def expand_boxes(boxes: torch.Tensor, margin: float, width: int, height: int) -> torch.Tensor:
    """`data.crops.expand_box` on many boxes: grow by `margin` x size per side, floor/ceil, clip.

    Args:
        boxes: (K, 4) x1 y1 x2 y2 in pixels, any float dtype.
        margin: growth on each side as a fraction of the box size.
        width, height: the image size the boxes are clipped to.

    Returns:
        (K, 4) float64 integer-valued bounds (left, top, right, bottom), right > left, bottom > top.
    """
    b = boxes.to(torch.float64).reshape(-1, 4)
    dx, dy = (b[:, 2] - b[:, 0]) * margin, (b[:, 3] - b[:, 1]) * margin
    left = torch.floor(b[:, 0] - dx).clamp(min=0)
    top = torch.floor(b[:, 1] - dy).clamp(min=0)
    right = torch.minimum(torch.ceil(b[:, 2] + dx), torch.tensor(float(width), dtype=torch.float64))
    bottom = torch.minimum(torch.ceil(b[:, 3] + dy), torch.tensor(float(height), dtype=torch.float64))
    return torch.stack([left, top, torch.maximum(right, left + 1), torch.maximum(bottom, top + 1)], dim=1)


def roi_crops(images: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """Crop and resize boxes of a stack of images in one call.

    Args:
        images: (B, 3, H, W) float images (any value range; the output keeps it).
        rois: (K, 5) float rows (image index in the stack, x1, y1, x2, y2), bounds as `expand_boxes` gives.
        size: output side.

    Returns:
        (K, 3, size, size) crops, same dtype and device as `images`.
    """
    if rois.numel() == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    return roi_align(images, rois.to(images.dtype), (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def imagenet_normalise(crops: torch.Tensor) -> torch.Tensor:
    """(K, 3, S, S) RGB in 0..255 -> ImageNet-normalised float32, as `augment.crop_transform` normalises."""
    mean = torch.tensor(IMAGENET_MEAN, device=crops.device).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=crops.device).view(1, 3, 1, 1) * 255.0)
    return (crops.float() - mean) * inv_std


def gray_levels(crops: torch.Tensor) -> torch.Tensor:
    """(K, 3, h, w) RGB in 0..255 -> (K, h, w) int32 grey levels, exactly cv2's uint8 RGB2GRAY.

    The crops are first rounded to uint8 levels (what `cv2.resize` returns on the CPU path), so LBP
    sees the same kind of ties between equal neighbours as it does there.
    """
    rgb = crops.round().clamp(0, 255).to(torch.int32)
    w = torch.tensor(_GRAY_WEIGHTS, dtype=torch.int32, device=crops.device).view(1, 3, 1, 1)
    return ((rgb * w).sum(dim=1) + (1 << (_GRAY_SHIFT - 1))) >> _GRAY_SHIFT


def lbp_from_crops(crops: torch.Tensor, grid: tuple[int, int], P: int, R: float) -> torch.Tensor:
    """Grid uniform-LBP histograms of crops already resized to the LBP size (`features.lbp.lbp_histograms`).

    Args:
        crops: (K, 3, r, r) RGB in 0..255, on any device.
        grid: (rows, cols) of cells.
        P, R: LBP samples and radius.

    Returns:
        (K, rows * cols * (P + 2)) float32 on the crops' device, rows L2-normalised.
    """
    # float64 codes (the default) reproduce the CPU path bit for bit on CPU and CUDA alike, so a gallery
    # built on one device and queries run on the other see the same codes.
    return grid_histograms(lbp_codes_batch(gray_levels(crops), P, R), grid, P)


def _stacks(images: Sequence[np.ndarray], owners: np.ndarray) -> list[list[int]]:
    """Groups of at most IMAGES_PER_STACK same-sized images among those that own a box."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in np.unique(owners).tolist():
        by_shape.setdefault(images[i].shape, []).append(i)
    return [m[s : s + IMAGES_PER_STACK] for m in by_shape.values() for s in range(0, len(m), IMAGES_PER_STACK)]


@torch.inference_mode()
def roi_parts(
    images: Sequence[np.ndarray], owners: np.ndarray, boxes: np.ndarray, margin: float, device: torch.device,
    names: Sequence[str], batch_size: int, global_fn: tuple[Callable[[torch.Tensor], torch.Tensor], int],
    lbp: tuple[int, tuple[int, int], int, float] | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Feature parts of boxes cut by roi_align: per stack of same-sized images one upload, then one crop
    call and one model call per batch of boxes (`features.extract.CropFeatures.box_parts`).

    Args:
        images: RGB uint8 (H_i, W_i, 3) arrays.
        owners: (K,) int, the image each box is on.
        boxes: (K, 4) float x1 y1 x2 y2, grown by `margin` and clipped as `expand_box` does.
        margin: growth per side, a fraction of the box size.
        device: where crops are cut and the model runs.
        names: parts to compute, among "global" and "lbp".
        batch_size: boxes per crop call and model call.
        global_fn: (normalised (N, 3, S, S) -> (N, D) rows on the device, S).
        lbp: (resize, grid, P, R) of the LBP part; needed only when "lbp" is among the names.

    Returns:
        {name: (K, D_name) float32} in box order.
    """
    forward, size = global_fn
    if "lbp" in names and lbp is None:
        raise ValueError("roi_parts: the 'lbp' part needs its (resize, grid, P, R)")
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in names}
    for chunk in _stacks(images, owners):
        local = np.full(len(images), -1, np.int64)
        local[chunk] = np.arange(len(chunk))
        sel = np.flatnonzero(local[owners] >= 0)
        stack = torch.from_numpy(np.stack([images[i] for i in chunk])).to(device, non_blocking=True)
        stack = stack.permute(0, 3, 1, 2).float()
        h, w = images[chunk[0]].shape[:2]
        grown = expand_boxes(torch.from_numpy(boxes[sel]), margin, w, h)
        rois = torch.cat([torch.from_numpy(local[owners[sel]]).to(grown)[:, None], grown], 1).to(device)
        step = max(1, batch_size)
        for b in range(0, len(sel), step):
            part, idx = rois[b : b + step], sel[b : b + step]
            if "global" in pieces:
                pieces["global"].append((idx, forward(imagenet_normalise(roi_crops(stack, part, size))).cpu().numpy()))
            if "lbp" in pieces and lbp is not None:
                hist = lbp_from_crops(roi_crops(stack, part, lbp[0]), lbp[1], lbp[2], lbp[3])
                pieces["lbp"].append((idx, hist.cpu().numpy()))
    out = {}
    for name, got in pieces.items():
        rows = np.zeros((len(boxes), got[0][1].shape[1] if got else 0), np.float32)
        for idx, values in got:
            rows[idx] = values
        out[name] = rows
    return out
