"""The official score (S1/S2/S3), result.json parsing, retrieval metrics and VOC AP, on hand-made data.

Expected values are worked out by hand in the comments; the split is described in score_split.py.
"""

from __future__ import annotations

import copy
import doctest
import json
import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou as tv_box_iou

import imagesearch.metrics.detection
import imagesearch.metrics.official
import imagesearch.metrics.retrieval
from imagesearch.metrics import (
    ResultFormatError,
    box_iou,
    mean_average_precision,
    parse_results,
    recall_at_k,
    score,
    snap_frame,
    topk_item_accuracy,
    voc_ap50,
)
from tests.helpers import perfect_result
from tests.unit.score_split import build_split


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def levels(report) -> tuple[tuple[int, int, int], ...]:
    return tuple((lv.tp, lv.n_pred, lv.n_gt) for lv in (report.s1, report.s2, report.s3))


def one(item_id: str, frame_index: int, entries: list[dict]) -> dict:
    return {"item_id": item_id, "frame_index": frame_index, "result": entries}


def entry(img: str, item_box, frame_box) -> dict:
    return {"img_name": img, "item_box": list(item_box), "frame_box": list(frame_box)}


# --- official score ---------------------------------------------------------------------------------------------


def test_perfect_prediction_scores_one_at_every_level():
    split = build_split()
    report = score(split, perfect_result(split))
    assert levels(report) == ((3, 3, 3),) * 3  # vA, vB, vC have a product; vD has only distractors
    for lv in (report.s1, report.s2, report.s3):
        assert (lv.precision, lv.recall, lv.f1) == (1.0, 1.0, 1.0)
    assert close(report.score, 1.0)
    assert [v.reason for v in report.videos] == ["hit", "hit", "hit"]
    assert report.scope == "all" and report.num_scope_videos == 4


# Only vA is in scope, so N_P = N_GT = 1 and each level's F1 is 0 or 1: score = 0.2 s1 + 0.6 s2 + 0.2 s3.
# vA's instance 101 is at [0,0,100,100] in A/0.jpg and at [0,0,100,100] (and [300,300,400,400]) in frame 80.
@pytest.mark.parametrize(
    ("pred", "expected_score", "reason"),
    [
        (one("B", 80, [entry("0", (0, 0, 50, 100), (0, 0, 100, 100))]), 0.0, "wrong item"),
        (one("A", 40, [entry("0", (0, 0, 100, 100), (0, 0, 100, 100))]), 0.2, "item not in frame"),
        # item_box [0,0,100,40] lies inside [0,0,100,100]: IoU = 40/100 = 0.4
        (one("A", 80, [entry("0", (0, 0, 100, 40), (0, 0, 100, 100))]), 0.8, "product box IoU <= 0.5"),
        # frame_box IoU 0.4 fails the same way
        (one("A", 80, [entry("0", (0, 0, 100, 100), (0, 0, 40, 100))]), 0.8, "frame box IoU <= 0.5"),
        # IoU exactly 0.5 is not > 0.5
        (one("A", 80, [entry("0", (0, 0, 100, 50), (0, 0, 100, 100))]), 0.8, "product box IoU <= 0.5"),
        (one("A", 80, [entry("0", (0, 0, 100, 60), (0, 0, 100, 100))]), 1.0, "hit"),  # IoU 0.6
        # A/1.jpg holds 101 at [10,10,110,110]: the box [0,0,80,80] has IoU 6400/10000 = 0.64 in A/0.jpg but
        # 4900/11500 = 0.43 in A/1.jpg, so the right image must be named
        (one("A", 80, [entry("0", (0, 0, 80, 80), (0, 0, 100, 100))]), 1.0, "hit"),
        (one("A", 80, [entry("1", (0, 0, 80, 80), (0, 0, 100, 100))]), 0.8, "product box IoU <= 0.5"),
        (one("A", 80, [entry("1", (10, 10, 110, 110), (0, 0, 100, 100))]), 1.0, "hit"),
        (one("A", 80, [entry("7", (0, 0, 100, 100), (0, 0, 100, 100))]), 0.8, "product box IoU <= 0.5"),
        (one("A", 80, []), 0.8, "no result entry"),  # right item and frame, no boxes
        # a box on the distractor never matches
        (one("A", 80, [entry("0", (0, 0, 100, 100), (500, 500, 540, 540))]), 0.8, "frame box IoU <= 0.5"),
    ],
)
def test_each_level_failing_alone(pred, expected_score, reason):
    report = score(build_split(), {"vA": pred}, video_ids=["vA"])
    assert close(report.score, expected_score)
    assert report.videos[0].reason == reason
    assert report.scope == "video_ids" and report.num_scope_videos == 1


def test_second_entry_can_hit_and_is_reported():
    pred = one("A", 80, [entry("0", (0, 0, 100, 40), (0, 0, 100, 100)), entry("0", (0, 0, 100, 100), (0, 0, 100, 90))])
    v = score(build_split(), {"vA": pred}, video_ids=["vA"]).videos[0]
    assert (v.s1, v.s2, v.s3, v.matched_entry, v.matched_instance) == (True, True, True, 1, 101)


def test_snap_frame_rule():
    frames = [0, 40, 80]
    assert snap_frame(80, frames) == 80
    assert snap_frame(100, frames) == 80  # 20 away: inside
    assert snap_frame(101, frames) is None  # 21 away: outside
    assert snap_frame(59, frames) == 40 and snap_frame(61, frames) == 80
    assert snap_frame(60, frames) == 40  # tie between 40 and 80: the earlier frame
    assert snap_frame(20, frames) == 0


# vA: frame 40 holds only a distractor, frame 80 holds 101. The frame box matches 101 in frame 80.
@pytest.mark.parametrize(
    ("frame_index", "snapped", "s2"),
    [(100, 80, True), (101, None, False), (61, 80, True), (60, 40, False), (59, 40, False)],
)
def test_frame_snapping_in_score(frame_index, snapped, s2):
    pred = one("A", frame_index, [entry("0", (0, 0, 100, 100), (0, 0, 100, 100))])
    v = score(build_split(), {"vA": pred}, video_ids=["vA"]).videos[0]
    assert (v.s1, v.snapped_frame, v.s2, v.s3) == (True, snapped, s2, s2)


def test_empty_result_scores_zero():
    report = score(build_split(), {})
    assert levels(report) == ((0, 0, 3),) * 3
    assert (report.s1.precision, report.s1.recall, report.s1.f1, report.score) == (0.0, 0.0, 0.0, 0.0)
    assert report.abstained_videos == ["vA", "vB", "vC"]


def test_abstaining_lowers_recall_not_precision():
    split = build_split()
    result = perfect_result(split)
    del result["vC"]
    report = score(split, result)
    # P = 2/2, R = 2/3, F1 = 2 * (2/3) / (5/3) = 0.8 at every level
    assert levels(report) == ((2, 2, 3),) * 3
    assert report.s1.precision == 1.0 and close(report.s1.recall, 2 / 3)
    assert close(report.score, 0.8)
    assert report.abstained_videos == ["vC"]


def test_unknown_video_counts_as_a_wrong_prediction():
    split = build_split()
    result = perfect_result(split)
    result["zz"] = one("A", 80, [entry("0", (0, 0, 100, 100), (0, 0, 100, 100))])
    report = score(split, result)
    # P = 3/4, R = 1, F1 = 2 * 0.75 / 1.75 = 6/7
    assert levels(report) == ((3, 4, 3),) * 3
    assert close(report.score, 6 / 7)
    assert report.unknown_videos == ["zz"]
    assert report.videos[-1].reason == "unknown video"


def test_mixed_outcomes_hand_computed():
    split = build_split()
    result = perfect_result(split)
    result["vB"]["item_id"] = "C"  # wrong item
    del result["vC"]  # abstain
    result["vD"] = one("A", 0, [])  # distractor-only video: a prediction, never a true positive
    result["zz"] = one("A", 0, [])  # unknown
    report = score(split, result)
    # TP 1 (vA), N_P 4 (vA vB vD zz), N_GT 3 (vA vB vC): P 1/4, R 1/3, F1 = (2/12) / (7/12) = 2/7
    assert levels(report) == ((1, 4, 3),) * 3
    assert close(report.score, 2 / 7)
    assert {v.video_id: v.reason for v in report.videos} == {
        "vA": "hit",
        "vB": "wrong item",
        "vC": "abstained",
        "vD": "no product in video",
        "zz": "unknown video",
    }


def test_distractor_only_video_is_not_in_n_gt():
    report = score(build_split(), {}, video_ids=["vD"])
    assert (report.s1.n_gt, report.s1.n_pred, report.score) == (0, 0, 0.0)
    assert report.videos == []


def test_duplicate_instance_in_one_frame_either_box_matches():
    split = build_split()
    for frame_box, inst in [((0, 0, 100, 100), 101), ((300, 300, 400, 400), 101)]:
        v = score(split, {"vA": one("A", 80, [entry("0", (0, 0, 100, 100), frame_box)])}, video_ids=["vA"]).videos[0]
        assert (v.s3, v.matched_instance) == (True, inst)


# vB: B/0.jpg has 201 at [0,0,50,100] and 202 at [50,0,100,100]; frame 40 holds 202 at [200,200,300,300],
# frame 80 holds 201 at [0,0,100,100] and 202.
@pytest.mark.parametrize(
    ("frame_index", "item_box", "frame_box", "s2", "s3", "inst"),
    [
        (0, (0, 0, 50, 100), (0, 0, 100, 100), True, True, 201),  # top only
        (40, (50, 0, 100, 100), (200, 200, 300, 300), True, True, 202),  # bottom only: S2 holds for either piece
        (80, (0, 0, 50, 100), (0, 0, 100, 100), True, True, 201),
        (80, (50, 0, 100, 100), (200, 200, 300, 300), True, True, 202),
        (80, (0, 0, 50, 100), (200, 200, 300, 300), True, False, None),  # boxes of two different pieces
        (40, (0, 0, 50, 100), (0, 0, 100, 100), True, False, None),  # piece 201 is not in frame 40
    ],
)
def test_two_piece_item(frame_index, item_box, frame_box, s2, s3, inst):
    pred = one("B", frame_index, [entry("0", item_box, frame_box)])
    v = score(build_split(), {"vB": pred}, video_ids=["vB"]).videos[0]
    assert (v.s1, v.s2, v.s3, v.matched_instance) == (True, s2, s3, inst)


def test_video_ids_restriction_sets_aside_other_predictions():
    split = build_split()
    report = score(split, perfect_result(split), video_ids=["vA", "vB"])
    assert levels(report) == ((2, 2, 2),) * 3
    assert report.out_of_scope_videos == ["vC"]
    with pytest.raises(ValueError, match="nope"):
        score(split, {}, video_ids=["nope"])


def test_topk_in_report_from_ranked_items():
    split = build_split()
    result = perfect_result(split)
    del result["vC"]
    result["vA"]["ranked_items"] = ["B", "C", "A"]
    result["vB"]["ranked_items"] = ["B"]
    report = score(split, result)
    # over N_GT = 3 videos: vA hits at rank 3, vB at rank 1, vC abstained
    assert report.topk == {"top1": 1 / 3, "top5": 2 / 3, "top20": 2 / 3}
    assert score(split, perfect_result(split)).topk is None
    assert close(report.score, 0.8)  # the official score ignores ranked_items


def test_report_to_dict_is_json_ready():
    split = build_split()
    d = score(split, perfect_result(split)).to_dict()
    assert json.loads(json.dumps(d))["s2"] == {
        "tp": 3,
        "n_pred": 3,
        "n_gt": 3,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    assert d["videos"][0]["snapped_frame"] == 80


# --- result.json parsing ----------------------------------------------------------------------------------------

GOOD = {"item_id": "A", "frame_index": 80, "result": [entry("0", (0, 0, 1, 1), (0, 0, 1, 1))]}


def _with(path: tuple, value) -> dict:
    obj = copy.deepcopy(GOOD)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return {"vX": obj}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (_with(("item_id",), 44), "item_id"),
        (_with(("item_id",), KeyError), "item_id"),
        (_with(("frame_index",), "280"), "frame_index"),
        (_with(("frame_index",), 280.5), "frame_index"),
        (_with(("frame_index",), True), "frame_index"),
        (_with(("frame_index",), -1), "frame_index"),
        (_with(("result",), {"img_name": "0"}), "result"),
        (_with(("result",), KeyError), "result"),
        (_with(("result", 0), "0.jpg"), "result[0]"),
        (_with(("result", 0, "img_name"), 3), "result[0].img_name"),
        (_with(("result", 0, "item_box"), [1, 2, 3]), "result[0].item_box"),
        (_with(("result", 0, "item_box"), [1, 2, 3, float("nan")]), "result[0].item_box"),
        (_with(("result", 0, "frame_box"), ["1", 2, 3, 4]), "result[0].frame_box"),
        (_with(("result", 0, "frame_box"), KeyError), "result[0].frame_box"),
        (_with(("ranked_items",), "A"), "ranked_items"),
        ({"vX": ["A", 80]}, "<entry>"),
    ],
)
def test_malformed_results_name_video_and_field(bad, field):
    with pytest.raises(ResultFormatError) as info:
        parse_results(bad)
    assert "'vX'" in str(info.value) and f"'{field}'" in str(info.value)


def test_parse_results_leniency_and_file_errors(tmp_path):
    raw = copy.deepcopy(GOOD) | {"frame_index": 80.0, "ranked_items": ["A"], "extra": 1}
    raw["result"][0]["img_name"] = "3.JPG"
    p = parse_results({"vX": raw})["vX"]
    assert (p.frame_index, p.result[0].img_name, p.ranked_items) == (80, "3", ["A"])
    assert isinstance(p.frame_index, int)
    bad = tmp_path / "result.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ResultFormatError, match="result.json"):
        parse_results(bad)
    bad.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ResultFormatError, match="top level"):
        parse_results(bad)
    with pytest.raises(ResultFormatError, match="'vX'"):
        score(build_split(), {"vX": {"item_id": "A"}})


# --- retrieval --------------------------------------------------------------------------------------------------


def test_topk_item_accuracy():
    ranked = {"v1": ["a", "b", "c"], "v2": ["c", "b", "a"], "v3": ["x"]}
    truth = {"v1": "a", "v2": "a", "v3": "b", "v4": "a"}  # v4 abstained: a miss
    assert topk_item_accuracy(ranked, truth, ks=(1, 3, 20)) == {"top1": 0.25, "top3": 0.5, "top20": 0.5}
    assert topk_item_accuracy({}, {}, ks=(1,)) == {"top1": 0.0}


# gallery labels a b c a; q0 (a) ranks b c a a -> first positive at rank 3; q1 (b) ranks b first; q2 (d) absent.
DIST = np.array([[0.5, 0.1, 0.2, 0.3], [0.9, 0.1, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])
GALLERY = ["a", "b", "c", "a"]
QUERIES = ["a", "b", "d"]


def test_recall_at_k_hand_matrix():
    expected = {"recall@1": 1 / 3, "recall@2": 1 / 3, "recall@3": 2 / 3, "recall@10": 2 / 3}
    assert recall_at_k(DIST, QUERIES, GALLERY, ks=(1, 2, 3, 10)) == expected
    assert recall_at_k(-DIST, QUERIES, GALLERY, ks=(1, 2, 3, 10), similarity=True) == expected
    assert recall_at_k(torch.tensor(DIST), QUERIES, GALLERY, ks=(1, 2, 3, 10)) == expected
    ranked = np.array([[1, 2, 3, 0], [1, 2, 3, 0], [0, 1, 2, 3]])
    assert recall_at_k(ranked, QUERIES, GALLERY, ks=(1, 2, 3, 10)) == expected


def test_recall_at_k_ideal_embedding_and_missing_label():
    gallery_labels = np.array([0, 1, 2, 3, 1])
    query_labels = np.array([3, 1, 0, 2])
    eye = torch.eye(4)
    dist = torch.cdist(eye[query_labels], eye[gallery_labels])  # ideal one-hot model: 0 to its own label
    assert recall_at_k(dist, query_labels, gallery_labels, ks=(1, 5)) == {"recall@1": 1.0, "recall@5": 1.0}
    assert recall_at_k(dist, np.array([9, 9, 9, 9]), gallery_labels, ks=(1, 5)) == {"recall@1": 0.0, "recall@5": 0.0}


def test_recall_ties_break_by_gallery_index():
    dist = [[0.1, 0.1]]
    assert recall_at_k(dist, ["x"], ["x", "y"], ks=(1,)) == {"recall@1": 1.0}
    assert recall_at_k(dist, ["y"], ["x", "y"], ks=(1,)) == {"recall@1": 0.0}


def test_mean_average_precision_hand_values():
    # q0: positives at ranks 3 and 4 -> (1/3 + 2/4) / 2 = 5/12; q1: rank 1 -> 1; q2: no positive -> 0
    assert close(mean_average_precision(DIST, QUERIES, GALLERY), (5 / 12 + 1 + 0) / 3)
    assert close(mean_average_precision(-DIST, QUERIES, GALLERY, similarity=True), (5 / 12 + 1) / 3)


# --- boxes and detection AP -------------------------------------------------------------------------------------


def test_box_iou_hand_values_and_torchvision_oracle():
    assert box_iou([[0, 0, 100, 100]], [[0, 0, 100, 60], [0, 0, 100, 50], [200, 200, 300, 300]]).tolist() == [
        [0.6, 0.5, 0.0]
    ]
    assert box_iou([[5, 5, 5, 5]], [[5, 5, 5, 5]]).tolist() == [[0.0]]  # empty union
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(2, 12, 2))
    boxes = np.concatenate([xy.min(axis=0), xy.max(axis=0)], axis=1)
    ours = box_iou(boxes[:5], boxes[5:])
    theirs = tv_box_iou(torch.tensor(boxes[:5]), torch.tensor(boxes[5:])).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def _det(boxes, scores, labels) -> dict:
    return {"boxes": np.array(boxes, dtype=float).reshape(-1, 4), "scores": scores, "labels": labels}


def test_voc_ap50_hand_computed():
    gts = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [1, 1]},
        {"boxes": [[0, 0, 10, 10], [0, 0, 10, 10]], "labels": [1, 2]},
        {"boxes": np.zeros((0, 4)), "labels": []},
    ]
    preds = [
        # TP (0.9), duplicate of the same box: FP (0.8), a box on nothing: FP (0.6)
        _det([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.6], [1, 1, 1]),
        _det([[0, 0, 10, 10], [0, 0, 10, 10]], [0.7, 0.5], [1, 2]),  # TP for class 1 and class 2
        _det([[0, 0, 5, 5]], [0.95], [3]),  # class 3 has no ground truth: left out
    ]
    out = voc_ap50(preds, gts)
    # class 1, by score: TP FP TP FP, 3 GT -> precision 1 .5 .667 .5, recall 1/3 1/3 2/3 2/3;
    # interpolated precision 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0 beyond -> AP = 1/3 + 2/9 = 5/9
    assert close(out["per_class"][1], 5 / 9) and out["per_class"][2] == 1.0
    assert set(out["per_class"]) == {1, 2} and out["num_gt"] == {1: 3, 2: 1}
    assert close(out["mAP"], (5 / 9 + 1) / 2)


def test_voc_ap50_threshold_is_strict_and_order_matters():
    gts = [{"boxes": [[0, 0, 100, 100]], "labels": [1]}]
    at_half = voc_ap50([_det([[0, 0, 100, 50]], [0.9], [1])], gts)  # IoU exactly 0.5
    assert at_half["mAP"] == 0.0
    # a false positive ranked above the true positive halves the precision at recall 1
    fp_first = voc_ap50([_det([[0, 0, 100, 40], [0, 0, 100, 100]], [0.9, 0.8], [1, 1])], gts)
    assert fp_first["mAP"] == 0.5
    assert voc_ap50([_det([], [], [])], gts)["mAP"] == 0.0


@pytest.mark.parametrize(
    "module", [imagesearch.metrics.detection, imagesearch.metrics.retrieval, imagesearch.metrics.official]
)
def test_doctests(module):
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0
