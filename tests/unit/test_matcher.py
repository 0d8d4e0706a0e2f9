"""The matcher: frame sampling, and the decision rules end to end on hand-made neighbour lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagesearch.data.records import AnnotatedFrame, Box, Split, Video
from imagesearch.matching.gallery import Gallery, GalleryRecord
from imagesearch.matching.matcher import (
    FramePlan,
    Matcher,
    MatcherConfig,
    VideoTrace,
    decide,
    results_of,
    sample_frames,
)
from imagesearch.matching.voting import FrameCandidates
from imagesearch.metrics.results import parse_results
from tests.unit.tiny_retrieval import fake_extractor

BOX = (10.0, 20.0, 110.0, 220.0)


def det(frame: int, neighbours: list[tuple], category: str | None = None, box=BOX) -> FrameCandidates:
    return FrameCandidates(frame, box, 0.9, category, neighbours)


def nb(item: str, img: str, dist: float, category: str | None = None, instance: int = 0) -> tuple:
    return (item, img, (1.0, 2.0, 51.0, 82.0), dist, category, instance)


# v1 votes A three times, B once; v2 votes A twice, C once (so one-to-one gives A to v1, C to v2);
# v3 only sees D far away; v4 shows both pieces (11, 12) of the set S in frame 120; v5 tests categories.
VIDEOS = {
    "v1": [det(0, [nb("A", "1.jpg", 0.1), nb("B", "2.jpg", 0.2)]), det(40, [nb("A", "0.jpg", 0.3)]),
           det(80, [nb("B", "2.jpg", 0.05)]), det(120, [nb("A", "1.jpg", 0.4)])],
    "v2": [det(0, [nb("A", "1.jpg", 0.2)]), det(40, [nb("A", "1.jpg", 0.25)]), det(80, [nb("C", "3.jpg", 0.15)])],
    "v3": [det(0, [nb("D", "0.jpg", 0.9)])],
    "v4": [det(120, [nb("S", "0.jpg", 0.1, instance=11)], box=(0, 0, 50, 50)),
           det(120, [nb("S", "1.jpg", 0.2, instance=12)], box=(0, 50, 50, 100))],
    "v5": [det(0, [nb("X", "0.jpg", 0.1, "裙"), nb("Y", "0.jpg", 0.2, "上衣")], category="上衣")],
}  # fmt: skip
INSTANCES = {"A": {1}, "B": {2}, "C": {3}, "D": {4}, "S": {11, 12}, "X": {5}, "Y": {6}}


def test_sample_frames_even_aligned_and_among_candidates():
    assert sample_frames(400, 10) == [0, 44, 89, 133, 177, 222, 266, 310, 355, 399]
    assert sample_frames(400, 10, skip=80, align=40) == [80, 120, 160, 200, 240, 280, 320, 360]
    # positions linspace(0, 3, 3) = 0, 1.5, 2 -> rounded 0, 2, 3
    assert sample_frames(400, 3, candidates=[120, 0, 40, 80]) == [0, 80, 120]
    assert sample_frames(400, 10, skip=50, candidates=[0, 40, 80, 120]) == [80, 120]
    assert sample_frames(81, 10, align=40) == [0, 40, 80]
    assert sample_frames(5, 0) == []


def test_frame_plan_among_annotated_frames_with_boxes_or_product_boxes():
    def box(instance: int) -> Box:
        return Box(BOX, "短袖T恤", 0, 1, instance)

    frames = [AnnotatedFrame(0, [box(7)]), AnnotatedFrame(40, []), AnnotatedFrame(80, [box(0)]),
              AnnotatedFrame(120, [box(0), box(7)])]  # fmt: skip
    video = Video("v", Path("v.mp4"), Path("v.json"), frames)
    assert FramePlan(10, align=40)(video, 200) == [0, 40, 80, 120, 160]  # every aligned frame, annotated or not
    assert FramePlan(10, annotated_only=True)(video, 200) == [0, 80, 120]  # 40 has no box
    assert FramePlan(10, annotated_only=True, products_only=True)(video, 200) == [0, 120]  # 80: distractor alone
    assert FramePlan(1, annotated_only=True, products_only=True)(video, 200) == [0]


def test_vote_per_video_without_other_rules():
    cfg = MatcherConfig(two_piece=False)
    decisions = decide(VIDEOS, cfg, INSTANCES)
    assert {v: d.item_id for v, d in decisions.items()} == {"v1": "A", "v2": "A", "v3": "D", "v4": "S", "v5": "X"}
    v1 = decisions["v1"]
    assert [(s.item_id, s.votes) for s in v1.ranked] == [("A", 3), ("B", 1)]
    assert v1.results[0].frame_index == 0 and v1.results[0].img_name == "1.jpg"  # A's closest pair: 0.1


def test_one_to_one_abstention_two_piece_and_category_filter():
    cfg = MatcherConfig(one_to_one=True, max_distance=0.5, two_piece=True, category_filter=True)
    decisions = decide(VIDEOS, cfg, INSTANCES)
    assert decisions["v1"].item_id == "A"
    assert decisions["v2"].item_id == "C"  # A went to v1 (3 votes > 2): v2 takes its other voted item
    assert decisions["v3"].abstained  # evidence 0.9 > 0.5
    assert [e.img_name for e in decisions["v4"].results] == ["0.jpg", "1.jpg"]  # both pieces, one frame
    assert decisions["v5"].item_id == "Y"  # only the neighbour of the crop's category votes
    results = results_of([VideoTrace(v, decision=d) for v, d in decisions.items()])
    assert sorted(results) == ["v1", "v2", "v4", "v5"]
    assert results["v1"] == {
        "item_id": "A",
        "frame_index": 0,
        "result": [{"img_name": "1", "item_box": [1, 2, 51, 82], "frame_box": [10, 20, 110, 220]}],
        "ranked_items": ["A", "B"],
    }
    assert results["v2"]["result"][0]["img_name"] == "3" and results["v2"]["frame_index"] == 80
    assert [r["frame_box"] for r in results["v4"]["result"]] == [[0, 0, 50, 50], [0, 50, 50, 100]]
    parsed = parse_results(results)
    assert parsed["v4"].frame_index == 120 and parsed["v1"].ranked_items == ["A", "B"]


def test_unknown_weighting_is_an_error():
    with pytest.raises(ValueError, match="matcher.weighting"):
        decide(VIDEOS, MatcherConfig(weighting="majority"), INSTANCES)
    with pytest.raises(ValueError, match="matcher.score_power"):
        decide(VIDEOS, MatcherConfig(score_power=-0.5), INSTANCES)


def test_score_power_reaches_the_vote():
    # Three weak boxes vote A, one sure box votes B: the plain vote picks A, score_power=2 picks B.
    weak = [FrameCandidates(i * 40, BOX, 0.2, None, [nb("A", "0.jpg", 0.3)]) for i in range(3)]
    videos = {"v": [*weak, FrameCandidates(120, BOX, 0.9, None, [nb("B", "0.jpg", 0.3)])]}
    assert decide(videos, MatcherConfig(two_piece=False), INSTANCES)["v"].item_id == "A"
    assert decide(videos, MatcherConfig(two_piece=False, score_power=2.0), INSTANCES)["v"].item_id == "B"


def _gallery() -> Gallery:
    records = [
        GalleryRecord("A", "0.jpg", (0, 0, 10, 10), "短裙", 1),
        GalleryRecord("B", "0.jpg", (0, 0, 10, 10), None, 2),
    ]
    parts = {"global": np.eye(2, 6, dtype=np.float32), "lbp": np.eye(2, 40, dtype=np.float32)}
    return Gallery(records, parts, key="k")


def test_missing_and_unreadable_videos_are_skipped_and_counted(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    frames = [AnnotatedFrame(0, [])]
    videos = {
        "gone": Video("gone", tmp_path / "gone.mp4", Path("a.json"), frames, present=False),
        "bad": Video("bad", broken, Path("b.json"), frames, present=True, num_frames=10),
    }
    split = Split(root=tmp_path, videos=videos)
    matcher = Matcher(_gallery(), fake_extractor(), MatcherConfig(gt_boxes=True), merge_map={"短裙": "短裙+长裤"})
    assert matcher.gallery_groups == ["短裙+长裤", None]
    traces = matcher.run(split, progress=False)
    assert [(t.video_id, t.status) for t in traces] == [("gone", "missing"), ("bad", "unreadable")]
    assert all(t.decision is None for t in traces) and results_of(traces) == {}


def test_detector_needed_without_gt_boxes():
    with pytest.raises(ValueError, match="detector"):
        Matcher(_gallery(), fake_extractor(), MatcherConfig(gt_boxes=False))
