"""Per-video diagnostics of the official score: every reason, the IoUs of the best pair, the rank, and
the points lost, on the hand-made split of score_split.py (expected values worked out in the comments).

vA: instance 101 at [0,0,100,100] in A/0.jpg and in frame 80 (also at [300,300,400,400]); frames 0 and
40 show only a distractor. vB: the set B (201 top, 202 bottom). vC: 301 in frame 0. vD: distractors only.
"""

from __future__ import annotations

import json
import math

import pytest

from imagesearch.metrics import REASONS, diagnostics_dict, format_losses, loss_table, score, worst_videos
from tests.helpers import perfect_result
from tests.unit.score_split import build_split


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def one(item_id: str, frame_index: int, entries: list[tuple], ranked: list[str] | None = None) -> dict:
    out = {
        "item_id": item_id,
        "frame_index": frame_index,
        "result": [{"img_name": i, "item_box": list(ib), "frame_box": list(fb)} for i, ib, fb in entries],
    }
    return out | ({"ranked_items": ranked} if ranked is not None else {})


RIGHT = ("0", (0, 0, 100, 100), (0, 0, 100, 100))  # both boxes of 101 in A/0.jpg and frame 80


# One video in scope (N_P = N_GT = 1, D = 2): each lost level l costs 2 * w_l / 2 = w_l.
@pytest.mark.parametrize(
    ("pred", "reason", "snapped", "frame_iou", "item_iou", "lost"),
    [
        (one("A", 80, [RIGHT]), "hit", 80, 1.0, 1.0, (0.0, 0.0, 0.0)),
        # wrong item: the frame box still lies on 101 (IoU 1), no item IoU for the wrong item's image
        (one("B", 80, [RIGHT]), "wrong item", 80, 1.0, None, (0.2, 0.6, 0.2)),
        (one("A", 120, [RIGHT]), "no annotated frame within ±20", None, None, None, (0.0, 0.6, 0.2)),
        (one("A", 40, [RIGHT]), "item not in frame", 40, None, None, (0.0, 0.6, 0.2)),
        (one("A", 80, []), "no result entry", 80, None, None, (0.0, 0.0, 0.2)),
        # frame box [0,0,40,100] in [0,0,100,100]: IoU 4000/10000 = 0.4
        (one("A", 80, [("0", (0, 0, 100, 100), (0, 0, 40, 100))]), "frame box IoU <= 0.5", 80, 0.4, 1.0, (0, 0, 0.2)),
        # item box [0,0,100,50]: IoU exactly 0.5, which is not > 0.5
        (one("A", 80, [("0", (0, 0, 100, 50), (0, 0, 100, 100))]), "product box IoU <= 0.5", 80, 1.0, 0.5, (0, 0, 0.2)),
        # product image "7" is not one of A's images: item IoU 0
        (
            one("A", 80, [("7", (0, 0, 100, 100), (0, 0, 100, 100))]),
            "product box IoU <= 0.5",
            80,
            1.0,
            0.0,
            (0, 0, 0.2),
        ),
        (one("A", 80, [("0", (0, 0, 100, 40), (0, 0, 40, 100))]), "both boxes IoU <= 0.5", 80, 0.4, 0.4, (0, 0, 0.2)),
    ],
)
def test_every_reason_of_a_predicted_video(pred, reason, snapped, frame_iou, item_iou, lost):
    report = score(build_split(), {"vA": pred}, video_ids=["vA"])
    v = report.videos[0]
    assert v.reason == reason and v.snapped_frame == snapped
    assert (v.frame_iou is None) == (frame_iou is None) and (v.frame_iou is None or close(v.frame_iou, frame_iou))
    assert (v.item_iou is None) == (item_iou is None) and (v.item_iou is None or close(v.item_iou, item_iou))
    assert all(close(v.points_lost[lv], x) for lv, x in zip(("s1", "s2", "s3"), lost, strict=True))
    assert close(report.score + v.total_lost, 1.0) and report.max_reachable == 1.0


def test_best_pair_is_the_one_closest_to_a_hit():
    # entry 0: frame IoU 0.45, item IoU 0.45 (no box over 0.5); entry 1: frame IoU 1.0, item IoU 0.4 (one box over)
    entries = [("0", (0, 0, 100, 45), (0, 0, 45, 100)), ("0", (0, 0, 100, 40), (0, 0, 100, 100))]
    v = score(build_split(), {"vA": one("A", 80, entries)}, video_ids=["vA"]).videos[0]
    assert v.reason == "product box IoU <= 0.5" and close(v.frame_iou, 1.0) and close(v.item_iou, 0.4)
    assert (v.matched_entry, v.matched_instance) == (None, None)  # set only on a hit
    entries.append(RIGHT)
    v = score(build_split(), {"vA": one("A", 80, entries)}, video_ids=["vA"]).videos[0]
    assert (v.reason, v.matched_entry, v.matched_instance) == ("hit", 2, 101)


def test_rank_of_the_true_item():
    split = build_split()
    ranked = {"vA": one("A", 80, [RIGHT], ["A", "B"]), "vB": one("C", 0, [], ["C", "A", "B"]), "vC": one("A", 0, [])}
    ranks = {v.video_id: v.rank for v in score(split, ranked).videos}
    assert ranks == {"vA": 1, "vB": 3, "vC": None}  # vC has no ranked_items


def test_unpredicted_videos_named_by_the_matcher_status():
    status = {"vA": "missing", "vB": "unreadable", "vC": "no garments"}
    report = score(build_split(), {}, status=status)
    assert {v.video_id: v.reason for v in report.videos} == {
        "vA": "video missing",
        "vB": "video unreadable",
        "vC": "no garment detected",
    }
    assert report.abstained_videos == ["vA", "vB", "vC"]
    # N_P 0, N_GT 3, D 3: each video loses w_l / 3 per level, 1/3 in all; the score is 0
    assert all(close(v.total_lost, 1 / 3) for v in report.videos) and report.score == 0.0
    assert {v.reason for v in score(build_split(), {}).videos} == {"abstained"}


def test_mixed_losses_sum_to_the_maximum_reachable():
    split = build_split()
    result = perfect_result(split)
    result["vB"]["item_id"] = "C"  # wrong item
    del result["vC"]  # no prediction: the video is missing
    result["vD"] = one("A", 0, [])  # a prediction for a distractor-only video
    result["zz"] = one("A", 0, [])  # an unknown video id
    report = score(split, result, status={"vC": "missing"})
    # N_P 4 (vA vB vD zz), N_GT 3 (vA vB vC), D 7, TP 1 at every level: score = 2/7.
    # vB: 2 * w_l / 7 per level (2/7 in all); vC, vD, zz: w_l / 7 per level (1/7 each). 2/7 + 5/7 = 1.
    assert close(report.score, 2 / 7)
    lost = {v.video_id: v.total_lost for v in report.videos}
    assert close(lost["vA"] + 1, 1.0) and close(lost["vB"], 2 / 7)
    assert all(close(lost[v], 1 / 7) for v in ("vC", "vD", "zz"))
    vb = next(v for v in report.videos if v.video_id == "vB")
    assert close(vb.points_lost["s1"], 0.4 / 7) and close(vb.points_lost["s2"], 1.2 / 7)
    rows = {r.reason: r for r in loss_table(report)}
    assert set(rows) == {"wrong item", "video missing", "no product in video", "unknown video"}
    assert loss_table(report)[0].reason == "wrong item" and rows["wrong item"].videos == 1
    assert close(report.score + sum(r.points for r in rows.values()), report.max_reachable)
    assert [v.video_id for v in worst_videos(report, 2)] == ["vB", "vC"]  # 2/7 first; ties: fewer levels, then id


def test_s3_losses_cost_the_s3_weight_only():
    split = build_split()
    result = perfect_result(split)
    result["vA"]["result"][0]["item_box"] = [0, 0, 100, 40]  # product box IoU 0.4
    report = score(split, result)
    # D 6, TP 3 / 3 / 2: score = 0.2 + 0.6 + 0.2 * 2/3 = 14/15; vA loses 2 * 0.2 / 6 = 1/15 at S3
    assert close(report.score, 14 / 15)
    (row,) = loss_table(report)
    assert (row.reason, row.videos) == ("product box IoU <= 0.5", 1)
    assert close(row.s3, 1 / 15) and row.s1 == row.s2 == 0.0 and close(row.points, 1 / 15)


def test_no_product_in_scope_nothing_reachable():
    report = score(build_split(), {"vD": one("A", 0, [])}, video_ids=["vD"])
    assert (report.score, report.max_reachable, loss_table(report)) == (0.0, 0.0, [])
    assert report.videos[0].reason == "no product in video" and report.videos[0].total_lost == 0.0


def test_diagnostics_dict_and_text():
    split = build_split()
    result = perfect_result(split)
    result["vB"]["item_id"] = "C"
    report = score(split, result)
    d = json.loads(json.dumps(diagnostics_dict(report), ensure_ascii=False))
    # D 6, TP 2: score = 2/3, vB loses 2/6 = 1/3
    assert close(d["score"], 2 / 3) and d["max_reachable"] == 1.0
    assert [r["reason"] for r in d["losses"]] == ["wrong item"] and close(d["losses"][0]["points"], 1 / 3)
    assert [v["video_id"] for v in d["videos"]] == ["vB", "vA", "vC"]  # the loser first, then by id
    assert d["videos"][0]["reason"] == "wrong item" and close(d["videos"][0]["total_lost"], 1 / 3)
    text = format_losses(report)
    assert "wrong item                            1  0.0667  0.2000  0.0667   0.3333" in text
    assert "score + lost = max reachable: 0.6667 + 0.3333 = 1.0000" in text
    assert all(r in REASONS for r in [v.reason for v in report.videos])
