"""Box IoU and detector AP@0.5 (PASCAL VOC style, all-points interpolation).

Both are written in numpy on purpose: the scorer reads a JSON file and must not need torch, and the
competition thresholds are strict (`IoU > 0.5`), so the IoU is computed in float64 where
`torchvision.ops.box_iou` on float32 tensors can round a pair sitting exactly at 0.5 either way.
`tests/unit/test_metrics.py` checks `box_iou` against `torchvision.ops.box_iou`. torchmetrics'
MeanAveragePrecision is not a project dependency (and uses COCO's 101-point interpolation), so the
VOC devkit's rule is re-implemented here in ~40 lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _as_numpy(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """Arrays, lists or (CPU or GPU) torch tensors, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def box_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """Pairwise IoU of two sets of boxes.

    Continuous coordinates (area = (x2 - x1) * (y2 - y1), no VOC "+1"); a box with x2 < x1 or
    y2 < y1 has zero area; a pair whose union is empty has IoU 0.

    Args:
        boxes1: (N, 4) boxes, x1 y1 x2 y2.
        boxes2: (M, 4) boxes, x1 y1 x2 y2.

    Returns:
        (N, M) float64 IoU.

    Example:
        >>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).round(4).tolist()
        [[0.3333, 0.0]]
    """
    a = _as_numpy(boxes1).reshape(-1, 4)
    b = _as_numpy(boxes2).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the PR curve with precision made monotone (VOC2010+ all-points interpolation)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_ap50(
    predictions: Sequence[Mapping[str, Any]],
    ground_truths: Sequence[Mapping[str, Any]],
    iou_thr: float = 0.5,
) -> dict[str, Any]:
    """Detector AP at IoU `iou_thr` per class and their mean, as the PASCAL VOC devkit computes it.

    Per class, the detections of all images are sorted by descending score (ties keep input order:
    image order, then detection order). Each takes the ground-truth box of its class in its image
    with the highest IoU; it is a true positive when that IoU is > `iou_thr` (strict, as in the
    devkit) and that box is still unmatched; a second detection of a matched box is a false positive
    (the devkit does not fall back to the next-best box). AP is the area under the interpolated
    PR curve over all points. A class with no ground truth has no AP and is left out of the mean.

    Args:
        predictions: one dict per image: "boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,) int.
        ground_truths: one dict per image, same order: "boxes" (M, 4) xyxy, "labels" (M,) int.
        iou_thr: the IoU a detection must exceed.

    Returns:
        {"per_class": {label: AP}, "mAP": mean over classes with ground truth (0.0 when none),
         "num_gt": {label: count}}.

    Example:
        >>> gt = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}]
        >>> pred = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 9]], "scores": [0.9, 0.8], "labels": [1, 1]}]
        >>> voc_ap50(pred, gt)["mAP"]  # the duplicate is a false positive after recall is already 1
        1.0
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"predictions cover {len(predictions)} images, ground_truths {len(ground_truths)}")
    gt_boxes = [_as_numpy(g["boxes"]).reshape(-1, 4) for g in ground_truths]
    gt_labels = [_as_numpy(g["labels"], np.int64).reshape(-1) for g in ground_truths]
    num_gt: dict[int, int] = {}
    for labels in gt_labels:
        for lab in labels.tolist():
            num_gt[lab] = num_gt.get(lab, 0) + 1
    per_class: dict[int, float] = {}
    for cls in sorted(num_gt):
        per_class[cls] = _class_ap(cls, predictions, gt_boxes, gt_labels, num_gt[cls], iou_thr)
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"per_class": per_class, "mAP": mean, "num_gt": num_gt}


def _class_ap(
    cls: int,
    predictions: Sequence[Mapping[str, Any]],
    gt_boxes: list[np.ndarray],
    gt_labels: list[np.ndarray],
    npos: int,
    iou_thr: float,
) -> float:
    dets: list[tuple[float, int, np.ndarray]] = []  # (score, image index, box)
    for img, pred in enumerate(predictions):
        labels = _as_numpy(pred["labels"], np.int64).reshape(-1)
        boxes = _as_numpy(pred["boxes"]).reshape(-1, 4)
        scores = _as_numpy(pred["scores"]).reshape(-1)
        dets += [(float(scores[j]), img, boxes[j]) for j in np.flatnonzero(labels == cls)]
    if not dets:
        return 0.0
    order = sorted(range(len(dets)), key=lambda j: -dets[j][0])  # stable: ties keep input order
    matched = [np.zeros(int((lab == cls).sum()), dtype=bool) for lab in gt_labels]
    tp = np.zeros(len(dets))
    for rank, j in enumerate(order):
        _, img, box = dets[j]
        cls_boxes = gt_boxes[img][gt_labels[img] == cls]
        if len(cls_boxes) == 0:
            continue
        ious = box_iou(box[None], cls_boxes)[0]
        best = int(np.argmax(ious))
        if ious[best] > iou_thr and not matched[img][best]:
            matched[img][best] = True
            tp[rank] = 1.0
    ctp = np.cumsum(tp)
    recall = ctp / npos
    precision = ctp / np.arange(1, len(dets) + 1)
    return _voc_ap(recall, precision)
