"""Matcher decision rules on hand-made frame predictions; every winner below is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.matching.assign import abstain, assign_one_to_one, decisions_to_results, to_result_entry
from imagesearch.matching.voting import (
    Evidence,
    FrameCandidates,
    ItemScore,
    Neighbour,
    VideoDecision,
    dedupe_boxes,
    dedupe_frames,
    two_piece_search,
    vote,
    vote_margins,
)

BOX = (10.0, 20.0, 110.0, 220.0)


def nb(item: str, dist: float, img: str = "0.jpg", box=(1, 2, 3, 4), cat=None, inst: int = 0) -> Neighbour:
    return Neighbour(item, img, box, dist, cat, inst)


def det(frame: int, *neighbours: Neighbour, box=BOX, score: float = 0.9, cat=None) -> FrameCandidates:
    return FrameCandidates(frame, box, score, cat, list(neighbours))


def test_majority_vote_and_ranking() -> None:
    frames = [det(0, nb("A", 0.5), nb("B", 0.6)), det(40, nb("A", 0.6)), det(80, nb("B", 0.1))]
    d = vote(frames)
    assert d.item_id == "A"  # 2 votes against 1
    assert [(s.item_id, s.score, s.votes) for s in d.ranked] == [("A", 2.0, 2), ("B", 1.0, 1)]
    assert d.ranked[0].mean_distance == pytest.approx(0.55)
    assert d.results[0].frame_index == 0 and d.results[0].distance == 0.5


def test_tie_broken_by_mean_distance() -> None:
    # A: votes at 0.4 and 0.6 (mean 0.5); B: 0.3 and 0.5 (mean 0.4) -> B.
    frames = [det(0, nb("A", 0.4)), det(40, nb("A", 0.6)), det(80, nb("B", 0.3)), det(120, nb("B", 0.5))]
    assert vote(frames).item_id == "B"


def test_inverse_distance_weighting_changes_the_winner() -> None:
    # count: A 2 votes, B 1. inverse distance: A 1/1 + 1/1 = 2, B 1/0.25 = 4 -> B.
    frames = [det(0, nb("A", 1.0)), det(40, nb("A", 1.0)), det(80, nb("B", 0.25))]
    assert vote(frames, weighting="count").item_id == "A"
    d = vote(frames, weighting="inverse_distance")
    assert d.item_id == "B"
    assert d.ranked[0].score == pytest.approx(4.0, rel=1e-5) and d.ranked[1].score == pytest.approx(2.0, rel=1e-5)


def test_score_power_lets_sure_detections_outvote_many_weak_ones() -> None:
    # Two boxes at score 0.3 vote A, one at 0.9 votes B. Power 0: A 2 votes to 1. Power 1: A 0.6,
    # B 0.9. Power 2: A 2 * 0.09 = 0.18, B 0.81.
    frames = [det(0, nb("A", 0.2), score=0.3), det(40, nb("A", 0.2), score=0.3), det(80, nb("B", 0.4), score=0.9)]
    assert vote(frames).item_id == "A"
    assert vote(frames, score_power=0.0).ranked[0].score == pytest.approx(2.0)
    assert vote(frames, score_power=1.0).item_id == "B"
    d = vote(frames, score_power=2.0)
    assert [(s.item_id, s.votes) for s in d.ranked] == [("B", 1), ("A", 2)]
    assert d.ranked[0].score == pytest.approx(0.81) and d.ranked[1].score == pytest.approx(0.18)
    with pytest.raises(ValueError, match="score_power"):
        vote(frames, score_power=-1.0)


def test_margin_weighting_lets_clear_matches_outvote_ambiguous_ones() -> None:
    # Three garments that are not the product sit about as close to A as to B (margins 0.05 each: 0.15 in
    # all); the product's two boxes are clearly closer to B than to C (margins 0.4 and 0.3: 0.7). A plain
    # count gives A (3 votes to 2).
    ambiguous = [det(i, nb("A", 0.50), nb("B", 0.55)) for i in (0, 40, 80)]
    clear = [det(120, nb("B", 0.3), nb("C", 0.7)), det(160, nb("B", 0.4), nb("C", 0.7))]
    assert vote(ambiguous + clear).item_id == "A"
    d = vote(ambiguous + clear, weighting="margin")
    assert d.item_id == "B"
    assert [(s.item_id, round(s.score, 9), s.votes) for s in d.ranked] == [("B", 0.7, 2), ("A", 0.15, 3), ("C", 0.0, 0)]


def test_vote_margins_by_hand() -> None:
    d = det(0, nb("A", 0.2), nb("A", 0.25), nb("B", 0.5), nb("C", 0.9))
    assert vote_margins(d, [nb("A", 0.2)]) == pytest.approx([0.3])  # B's 0.5, not A's second crop
    assert vote_margins(d, [nb("A", 0.2), nb("B", 0.5)]) == pytest.approx([0.3, 0.4])  # top_n 2: B to C
    only = det(0, nb("A", 0.2), nb("A", 0.6))
    assert vote_margins(only, [nb("A", 0.2)]) == pytest.approx([0.4])  # no other item: the farthest crop
    assert vote([only], weighting="margin").ranked[0].score == pytest.approx(0.4)
    assert vote_margins(det(0), []) == []


def test_rank_weighting_top2_counts_distinct_items() -> None:
    # det1 [A, B], det2 [A, A, C] (A counted once -> votes A, C), det3 [B, A].
    # rank weights 1, 1/2: A = 1 + 1 + 0.5 = 2.5, B = 0.5 + 1 = 1.5, C = 0.5.
    frames = [
        det(0, nb("A", 0.1), nb("B", 0.2)),
        det(40, nb("A", 0.1), nb("A", 0.15), nb("C", 0.3)),
        det(80, nb("B", 0.1), nb("A", 0.3)),
    ]
    d = vote(frames, top_n=2, weighting="rank")
    assert [(s.item_id, s.score, s.votes) for s in d.ranked] == [("A", 2.5, 3), ("B", 1.5, 2), ("C", 0.5, 1)]


def test_evidence_is_the_closest_pair_of_the_winner() -> None:
    # A wins 2 votes to 1, but its closest crop is the 2nd neighbour of the detection in frame 80.
    frames = [
        det(0, nb("A", 0.5, img="1.jpg")),
        det(40, nb("A", 0.3, img="2.jpg")),
        det(80, nb("B", 0.1), nb("A", 0.2, img="5.jpg", box=(7, 8, 9, 10)), box=(1.0, 2.0, 3.0, 4.0)),
    ]
    d = vote(frames)
    assert d.item_id == "A"
    assert d.results == (Evidence(80, (1.0, 2.0, 3.0, 4.0), "5.jpg", (7, 8, 9, 10), 0.2),)
    assert d.distance == 0.2 and d.frame_index == 80


def test_category_consistency_changes_the_winner() -> None:
    frames = [
        det(0, nb("A", 0.1, cat="skirt"), nb("B", 0.3, cat="top"), cat="top"),
        det(40, nb("A", 0.2, cat="skirt"), nb("B", 0.4, cat="top"), cat="top"),
        det(80, nb("C", 0.1, cat="skirt"), cat="skirt"),
        det(120, nb("A", 0.5, cat="skirt"), cat="dress"),  # no "dress" neighbour: keeps all (votes A)
    ]
    assert vote(frames).item_id == "A"  # 3 votes
    d = vote(frames, category_filter=True)
    # Filtered: B 2 votes (0.3, 0.4); C 1 vote (0.1) and A 1 vote (0.5, the "dress" fallback): C first.
    assert [(s.item_id, s.votes) for s in d.ranked] == [("B", 2), ("C", 1), ("A", 1)]
    assert d.item_id == "B"


def test_two_piece_set_gives_two_entries() -> None:
    item_instances = {"S": [101, 102], "X": [201]}
    frames = [
        det(0, nb("S", 0.1, img="0.jpg", inst=101), box=(0, 0, 50, 50)),
        det(40, nb("S", 0.2, img="1.jpg", box=(1, 2, 3, 4), inst=101), box=(5, 5, 50, 60)),
        det(
            40,
            nb("S", 0.15, img="1.jpg", inst=101),
            nb("S", 0.3, img="2.jpg", box=(5, 6, 7, 8), inst=102),
            box=(5, 60, 50, 120),
        ),
        det(80, nb("S", 0.4, inst=101), box=(0, 0, 9, 9)),
        det(80, nb("S", 0.6, inst=102), box=(0, 10, 9, 19)),  # a worse pair (sum 1.0)
    ]
    d = vote(frames)
    assert d.item_id == "S" and d.frame_index == 0  # the single closest pair
    # Frame 40: pairing the two detections' piece-101 matches is not a set; the valid pair is
    # (first: 101 at 0.2, second: 102 at 0.3), sum 0.5, better than frame 80's 0.4 + 0.6 = 1.0.
    two = two_piece_search(d, frames, item_instances)
    assert two.frame_index == 40
    assert two.results == (
        Evidence(40, (5.0, 5.0, 50.0, 60.0), "1.jpg", (1, 2, 3, 4), 0.2),
        Evidence(40, (5.0, 60.0, 50.0, 120.0), "2.jpg", (5, 6, 7, 8), 0.3),
    )
    entry = to_result_entry(two)
    assert entry["frame_index"] == 40 and [r["img_name"] for r in entry["result"]] == ["1", "2"]
    assert two_piece_search(d, frames, item_instances, max_distance=0.25) == d  # no pair within 0.25
    single = vote([det(0, nb("X", 0.1, inst=201)), det(0, nb("X", 0.2, inst=201))])
    assert two_piece_search(single, frames, item_instances) == single  # not a set


def _decision(*scores: tuple[str, float, int]) -> VideoDecision:
    ranked = tuple(
        ItemScore(item, score, votes, 0.1 if votes else float("inf"), Evidence(0, BOX, f"{item}.jpg", BOX, 0.1))
        for item, score, votes in scores
    )
    return VideoDecision(ranked[0].item_id, ranked, (ranked[0].evidence,))


def test_one_to_one_assignment_resolves_a_conflict() -> None:
    # Scores        A  B  C      Everyone's own winner: v1 A, v2 A, v3 B (A taken twice).
    #          v1   5  4  0      Totals of the 6 one-to-one assignments (v1, v2, v3):
    #          v2   4  0  1      ACB 5+1+3 = 9, BAC 4+4+2 = 10 (best), ABC 5+0+2 = 7,
    #          v3   0  3  2      BCA 4+1+0 = 5, CAB 0+4+3 = 7, CBA 0.
    decisions = {
        "v1": _decision(("A", 5, 5), ("B", 4, 4)),
        "v2": _decision(("A", 4, 4), ("C", 1, 1)),
        "v3": _decision(("B", 3, 3), ("C", 2, 2)),
    }
    out = assign_one_to_one(decisions)
    assert {v: d.item_id for v, d in out.items()} == {"v1": "B", "v2": "A", "v3": "C"}
    assert out["v1"].results == (Evidence(0, BOX, "B.jpg", BOX, 0.1),)
    assert out["v1"].ranked == decisions["v1"].ranked  # ranking untouched


def test_one_to_one_losers_fall_back_or_abstain() -> None:
    decisions = {
        "v1": _decision(("A", 2, 2)),
        "v2": _decision(("A", 1, 1), ("B", 0, 0)),  # B only seen among its neighbours
        "v3": _decision(("A", 0.5, 1)),
        "gone": VideoDecision(None),
    }
    out = assign_one_to_one(decisions)
    assert {v: d.item_id for v, d in out.items()} == {"v1": "A", "v2": "B", "v3": None, "gone": None}
    strict = assign_one_to_one(decisions, fallback=False)
    assert strict["v2"].abstained and strict["v2"].results == () and strict["v1"].item_id == "A"


def test_abstain_at_the_threshold_boundary() -> None:
    d = vote([det(0, nb("A", 0.5)), det(40, nb("A", 0.7))])
    assert abstain(d, 0.5) == d  # equal to the threshold: kept
    dropped = abstain(d, 0.49)
    assert dropped.abstained and dropped.results == () and dropped.ranked == d.ranked


def test_dedupe_keeps_the_highest_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)  # IoU(0, 1) = 90/110
    scores = np.array([0.6, 0.9, 0.5])
    assert dedupe_boxes(boxes, scores, 0.5).tolist() == [1, 2]
    assert dedupe_boxes(boxes, scores, 0.85).tolist() == [1, 0, 2]
    assert dedupe_boxes(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    frames = [
        det(0, box=(0, 0, 10, 10), score=0.6),
        det(0, box=(1, 0, 11, 10), score=0.9),
        det(40, box=(0, 0, 10, 10), score=0.6),  # same box, another frame: kept
    ]
    assert [(f.frame_index, f.det_score) for f in dedupe_frames(frames, 0.5)] == [(0, 0.9), (40, 0.6)]


def test_result_entry_schema() -> None:
    frames = [
        det(
            280,
            ("A", "3.jpg", (10.4, 20.6, 99.5, 200.2), 0.2),
            ("B", "1.jpg", (0, 0, 1, 1), 0.3),
            box=(1.2, 2.7, 300.49, 400.51),
        )
    ]
    entry = to_result_entry(vote(frames, top_n=2))
    assert entry == {
        "item_id": "A",
        "frame_index": 280,
        "result": [{"img_name": "3", "item_box": [10, 21, 100, 200], "frame_box": [1, 3, 300, 401]}],
        "ranked_items": ["A", "B"],
    }
    assert all(type(v) is int for r in entry["result"] for v in r["item_box"] + r["frame_box"])
    with pytest.raises(ValueError, match="abstaining"):
        to_result_entry(VideoDecision(None))
    assert list(decisions_to_results({"v2": VideoDecision(None), "v1": vote(frames)})) == ["v1"]


def test_tuples_are_accepted_and_sorted_and_empty_video_abstains() -> None:
    f = FrameCandidates(
        0, [1, 2, 3, 4], 0.5, None, [("B", "1.jpg", (0, 0, 1, 1), 0.9), ("A", "2.jpg", (0, 0, 1, 1), 0.1)]
    )
    assert [n.item_id for n in f.neighbours] == ["A", "B"] and f.box == (1.0, 2.0, 3.0, 4.0)
    assert vote([]).abstained and vote([det(0)]).abstained
