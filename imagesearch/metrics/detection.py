"""Box IoU and detector AP@0.5 (PASCAL VOC style, all-points interpolation).

Both are written in numpy on purpose: the scorer reads a JSON file and must not need torch, and the
competition thresholds are strict (`IoU > 0.5`), so the IoU is computed in float64 where
`torchvision.ops.box_iou` on float32 tensors can round a pair sitting exactly at 0.5 either way.
`voc_ap50` is vectorised (one IoU matrix per image, one sort over all detections), not a loop per
detection: evaluation may score millions of detections.
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
    min_score: float | None = None,
) -> dict[str, Any]:
    """Detector AP at IoU `iou_thr` per class and their mean, as the PASCAL VOC devkit computes it.

    Per class, the detections of all images are sorted by descending score (ties keep input order:
    image order, then detection order). Each takes the ground-truth box of its class in its image
    with the highest IoU; it is a true positive when that IoU is > `iou_thr` (strict, as in the
    devkit) and that box is still unmatched; a second detection of a matched box is a false positive
    (the devkit does not fall back to the next-best box). AP is the area under the interpolated
    PR curve over all points. A class with no ground truth has no AP and is left out of the mean.

    Vectorised: since a detection never falls back to another box, it is a true positive exactly when
    it is the first, in score order, of the detections whose best box is that box with IoU > `iou_thr`.
    So one IoU matrix per image (detections x boxes of the class) and one sort over all detections
    replace the devkit's loop over detections.

    Args:
        predictions: one dict per image: "boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,) int.
        ground_truths: one dict per image, same order: "boxes" (M, 4) xyxy, "labels" (M,) int.
        iou_thr: the IoU a detection must exceed.
        min_score: detections scored below it are left out (an evaluation threshold, as COCO's 0.05:
            the PR curve is then cut where the detector's scores end); None keeps every detection.

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
    dets = _Detections(predictions, min_score)
    per_class: dict[int, float] = {}
    for cls in sorted(num_gt):
        per_class[cls] = _class_ap(dets, cls, gt_boxes, gt_labels, num_gt[cls], iou_thr)
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"per_class": per_class, "mAP": mean, "num_gt": num_gt}


class _Detections:
    """Every image's detections in one set of arrays, in input order (image, then detection)."""

    def __init__(self, predictions: Sequence[Mapping[str, Any]], min_score: float | None) -> None:
        boxes = [_as_numpy(p["boxes"]).reshape(-1, 4) for p in predictions]
        scores = [_as_numpy(p["scores"]).reshape(-1) for p in predictions]
        labels = [_as_numpy(p["labels"], np.int64).reshape(-1) for p in predictions]
        sizes = [len(s) for s in scores]
        self.boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        self.scores = np.concatenate(scores) if scores else np.zeros(0)
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.image = np.repeat(np.arange(len(sizes)), sizes)
        if min_score is not None:
            keep = self.scores >= min_score
            self.boxes, self.scores, self.labels, self.image = (
                self.boxes[keep],
                self.scores[keep],
                self.labels[keep],
                self.image[keep],
            )


def _class_ap(
    dets: _Detections, cls: int, gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], npos: int, iou_thr: float
) -> float:
    mine = np.flatnonzero(dets.labels == cls)
    if len(mine) == 0:
        return 0.0
    image, boxes = dets.image[mine], dets.boxes[mine]
    # Best box of the class in its image per detection: (index among all the class's boxes, IoU).
    best_box = np.full(len(mine), -1, np.int64)
    best_iou = np.zeros(len(mine))
    cls_boxes = [b[lab == cls] for b, lab in zip(gt_boxes, gt_labels, strict=True)]
    first_box = np.concatenate([[0], np.cumsum([len(b) for b in cls_boxes])])
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])  # `image` ascends: one run per image
    for s, e in zip(starts, [*starts[1:], len(mine)], strict=True):
        img = int(image[s])
        if len(cls_boxes[img]):
            iou = box_iou(boxes[s:e], cls_boxes[img])
            best = iou.argmax(axis=1)  # the first of equal IoUs, as the devkit's argmax
            best_box[s:e] = first_box[img] + best
            best_iou[s:e] = iou[np.arange(e - s), best]
    order = np.argsort(-dets.scores[mine], kind="stable")  # ties keep input order
    hit = best_iou[order] > iou_thr
    tp = np.zeros(len(mine))
    ranks = np.flatnonzero(hit)
    _, first = np.unique(best_box[order][ranks], return_index=True)  # first detection of each box, by rank
    tp[ranks[first]] = 1.0
    ctp = np.cumsum(tp)
    recall = ctp / npos
    precision = ctp / np.arange(1, len(mine) + 1)
    return _voc_ap(recall, precision)


def best_iou_per_truth(
    predictions: Sequence[Mapping[str, Any]],
    ground_truths: Sequence[Mapping[str, Any]],
    min_score: float | None = None,
) -> np.ndarray:
    """For every ground-truth box (image order, then box order), the highest IoU any detection of its
    class in its image reaches (0.0 when there is none).

    Localisation apart from ranking: a box whose best IoU is > 0.5 was found, whatever the score of
    the detection that found it; AP then says whether that detection outranked the false ones.

    Args:
        predictions / ground_truths: as `voc_ap50`, aligned per image.
        min_score: only detections scored at least this count; None counts every detection.

    Returns:
        (number of ground-truth boxes,) float64.

    Example:
        >>> gt = [{"boxes": [[0, 0, 10, 10], [20, 0, 30, 10]], "labels": [1, 1]}]
        >>> pred = [{"boxes": [[0, 0, 10, 5]], "scores": [0.9], "labels": [1]}]
        >>> best_iou_per_truth(pred, gt).tolist()
        [0.5, 0.0]
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"predictions cover {len(predictions)} images, ground_truths {len(ground_truths)}")
    out = []
    for p, g in zip(predictions, ground_truths, strict=True):
        gt_boxes = _as_numpy(g["boxes"]).reshape(-1, 4)
        gt_labels = _as_numpy(g["labels"], np.int64).reshape(-1)
        boxes = _as_numpy(p["boxes"]).reshape(-1, 4)
        labels = _as_numpy(p["labels"], np.int64).reshape(-1)
        if min_score is not None:
            keep = _as_numpy(p["scores"]).reshape(-1) >= min_score
            boxes, labels = boxes[keep], labels[keep]
        iou = box_iou(gt_boxes, boxes)
        iou[gt_labels[:, None] != labels[None, :]] = 0.0
        out.append(iou.max(axis=1) if iou.shape[1] else np.zeros(len(gt_boxes)))
    return np.concatenate(out) if out else np.zeros(0)


IOU_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def iou_profile(best_iou: np.ndarray, bins: Sequence[float] = IOU_BINS) -> dict[str, Any]:
    """A histogram and summary of per-box best IoUs (`best_iou_per_truth`).

    Returns:
        {"boxes": count, "found": share with IoU > 0.5 (the competition's and VOC's test),
         "median": median IoU, "bins": the bin edges, "counts": boxes per bin, [lo, hi) (the last bin closed)}.

    Example:
        >>> iou_profile(np.array([0.0, 0.45, 0.6, 0.95]))["counts"]
        [1, 0, 1, 1, 0, 1]
    """
    values = np.asarray(best_iou, np.float64)
    counts, _ = np.histogram(values, bins=np.asarray(bins, np.float64))
    return {
        "boxes": int(len(values)),
        "found": float(np.mean(values > 0.5)) if len(values) else 0.0,
        "median": float(np.median(values)) if len(values) else 0.0,
        "bins": [float(b) for b in bins],
        "counts": [int(c) for c in counts],
    }
