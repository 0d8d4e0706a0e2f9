"""Vectorised detector AP@0.5 against the devkit's loop over detections (the implementation it replaced)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imagesearch.metrics.detection import _voc_ap, best_iou_per_truth, box_iou, iou_profile, voc_ap50


def loop_voc_ap50(predictions: list[dict], ground_truths: list[dict], iou_thr: float = 0.5) -> dict:
    """The previous `voc_ap50`, verbatim in substance: one Python step per detection in score order."""
    gt_boxes = [np.asarray(g["boxes"], np.float64).reshape(-1, 4) for g in ground_truths]
    gt_labels = [np.asarray(g["labels"], np.int64).reshape(-1) for g in ground_truths]
    num_gt: dict[int, int] = {}
    for labels in gt_labels:
        for lab in labels.tolist():
            num_gt[lab] = num_gt.get(lab, 0) + 1
    per_class = {}
    for cls in sorted(num_gt):
        dets = []
        for img, pred in enumerate(predictions):
            labels = np.asarray(pred["labels"], np.int64).reshape(-1)
            boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)
            scores = np.asarray(pred["scores"], np.float64).reshape(-1)
            dets += [(float(scores[j]), img, boxes[j]) for j in np.flatnonzero(labels == cls)]
        if not dets:
            per_class[cls] = 0.0
            continue
        order = sorted(range(len(dets)), key=lambda j: -dets[j][0])
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
        per_class[cls] = _voc_ap(ctp / num_gt[cls], ctp / np.arange(1, len(dets) + 1))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"per_class": per_class, "mAP": mean, "num_gt": num_gt}


def random_case(rng: np.random.Generator, images: int) -> tuple[list[dict], list[dict]]:
    """Boxes on a coarse integer grid (IoU exactly 0.5 and equal IoUs happen), scores with ties, 3 classes."""
    preds, gts = [], []
    for _ in range(images):
        n_gt = int(rng.integers(0, 4))
        gt = rng.integers(0, 6, size=(n_gt, 2)) * 10
        gt_boxes = np.concatenate([gt, gt + rng.integers(1, 4, size=(n_gt, 2)) * 10], axis=1).astype(float)
        gts.append({"boxes": gt_boxes, "labels": rng.integers(1, 4, size=n_gt)})
        n_det = int(rng.integers(0, 7))
        near = gt_boxes[rng.integers(0, n_gt, size=n_det)] if n_gt else np.zeros((n_det, 4))
        boxes = near + rng.integers(-1, 2, size=(n_det, 4)) * 10 * (rng.random((n_det, 1)) < 0.5)
        scores = np.round(rng.random(n_det), 1)  # ties across and within images
        preds.append({"boxes": boxes, "scores": scores, "labels": rng.integers(1, 4, size=n_det)})
    return preds, gts


def assert_same(got: dict, want: dict) -> None:
    assert got["num_gt"] == want["num_gt"] and got["per_class"].keys() == want["per_class"].keys()
    for cls, ap in want["per_class"].items():
        assert math.isclose(got["per_class"][cls], ap, rel_tol=1e-12, abs_tol=1e-12), (cls, got, want)
    assert math.isclose(got["mAP"], want["mAP"], rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_loop_on_random_cases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    preds, gts = random_case(rng, images=int(rng.integers(1, 40)))
    assert_same(voc_ap50(preds, gts), loop_voc_ap50(preds, gts))
    assert_same(voc_ap50(preds, gts, iou_thr=0.3), loop_voc_ap50(preds, gts, iou_thr=0.3))


def test_min_score_equals_the_loop_on_filtered_detections() -> None:
    preds, gts = random_case(np.random.default_rng(7), images=30)
    kept = [{k: np.asarray(v)[np.asarray(p["scores"]) >= 0.5] for k, v in p.items()} for p in preds]
    assert_same(voc_ap50(preds, gts, min_score=0.5), loop_voc_ap50(kept, gts))
    assert voc_ap50(preds, gts, min_score=2.0)["mAP"] == 0.0  # nothing left: every class scores 0


def test_hand_worked_duplicate_and_best_box_rules() -> None:
    # One image, two boxes of class 1: A = [0,0,10,10], B = [10,0,20,10].
    # d1 (0.9) = A: TP. d2 (0.8) overlaps A best (IoU 0.6 vs 0.25 with B): A is taken, so FP, with no
    # fall-back to B. d3 (0.7) = B: TP. Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1:
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    gts = [{"boxes": [[0, 0, 10, 10], [10, 0, 20, 10]], "labels": [1, 1]}]
    preds = [
        {"boxes": [[0, 0, 10, 10], [2, 0, 12, 10], [10, 0, 20, 10]], "scores": [0.9, 0.8, 0.7], "labels": [1, 1, 1]}
    ]
    assert box_iou([[2, 0, 12, 10]], gts[0]["boxes"]).round(4).tolist() == [[0.6667, 0.1111]]
    assert math.isclose(voc_ap50(preds, gts)["mAP"], 5 / 6, rel_tol=1e-12)
    # Equal scores keep input order: the FP first (image 0), then the TP (image 1): AP = 1/2.
    gts2 = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}, {"boxes": [[50, 50, 60, 60]], "labels": [1]}]
    preds2 = [
        {"boxes": [[30, 30, 40, 40]], "scores": [0.5], "labels": [1]},
        {"boxes": [[50, 50, 60, 60]], "scores": [0.5], "labels": [1]},
    ]
    # precision 0 then 1/2 at recall 0 then 1/2 (2 boxes): AP = 1/2 * 1/2 = 1/4
    assert math.isclose(voc_ap50(preds2, gts2)["mAP"], 0.25, rel_tol=1e-12)
    assert_same(voc_ap50(preds2, gts2), loop_voc_ap50(preds2, gts2))


def test_best_iou_per_truth_by_hand_and_against_a_loop() -> None:
    # Image 0: A = [0,0,10,10] (class 1), B = [10,0,20,10] (class 2). Detections: [2,0,12,10] class 1
    # (IoU 0.6667 with A; it overlaps B but is of another class), [10,0,20,5] class 2 scored 0.2 (IoU 0.5
    # with B). Image 1: one box, no detection.
    gts = [{"boxes": [[0, 0, 10, 10], [10, 0, 20, 10]], "labels": [1, 2]}, {"boxes": [[0, 0, 5, 5]], "labels": [1]}]
    preds = [
        {"boxes": [[2, 0, 12, 10], [10, 0, 20, 5]], "scores": [0.9, 0.2], "labels": [1, 2]},
        {"boxes": np.zeros((0, 4)), "scores": [], "labels": []},
    ]
    assert best_iou_per_truth(preds, gts).round(4).tolist() == [0.6667, 0.5, 0.0]
    assert best_iou_per_truth(preds, gts, min_score=0.5).round(4).tolist() == [0.6667, 0.0, 0.0]
    profile = iou_profile(best_iou_per_truth(preds, gts))
    # 0.5 is not > 0.5 (the strict test): one box of three found.
    assert profile["boxes"] == 3 and math.isclose(profile["found"], 1 / 3) and profile["median"] == 0.5
    assert profile["counts"] == [1, 0, 0, 2, 0, 0]  # bins [lo, hi): 0.5 and 0.6667 share [0.5, 0.7)
    # Random cases: the max over same-class detections, box by box.
    rng = np.random.default_rng(3)
    preds, gts = random_case(rng, images=20)
    got = best_iou_per_truth(preds, gts)
    want = []
    for p, g in zip(preds, gts, strict=True):
        for box, label in zip(np.asarray(g["boxes"]).reshape(-1, 4), np.asarray(g["labels"]).reshape(-1), strict=True):
            same = np.asarray(p["labels"]).reshape(-1) == label
            boxes = np.asarray(p["boxes"]).reshape(-1, 4)[same]
            want.append(box_iou(box[None], boxes).max() if len(boxes) else 0.0)
    np.testing.assert_allclose(got, want)
