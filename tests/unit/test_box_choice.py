"""compare_box_choices: S2 / S3 under each box rule from one set of decided traces (hand-made).

On the split of score_split.py, vA shows instance 101 at [0,0,100,100] in frame 80 (and A/0.jpg);
frames 0 and 40 show only a distractor. vA's detections of A:
d0 frame 80 on the product (score 0.6, distance 0.3), d1 frame 40 on the distractor (score 0.5, the
closest match 0.1), d2 frame 0 box [0,0,100,90] (score 0.4, distance 0.35).
"""

from __future__ import annotations

import pytest

from imagesearch.evaluation.box_choice import compare_box_choices
from imagesearch.matching.decisions import MatcherConfig, VideoTrace, decide
from imagesearch.matching.voting import FrameCandidates, Neighbour
from tests.unit.score_split import build_split

CROP = ("0.jpg", (0.0, 0.0, 100.0, 100.0))


def _det(frame: int, box: tuple, score: float, dist: float) -> FrameCandidates:
    return FrameCandidates(frame, box, score, None, [Neighbour("A", *CROP, dist)])


QUERIES = [
    _det(80, (0, 0, 100, 100), 0.6, 0.3),
    _det(40, (500, 500, 540, 540), 0.5, 0.1),
    _det(0, (0, 0, 100, 90), 0.4, 0.35),
]


@pytest.fixture()
def traces() -> list[VideoTrace]:
    cfg = MatcherConfig(box_choice="best_match", item_box_choice="paired")  # the run's rule; the others are scored beside it
    decision = decide({"vA": QUERIES}, cfg, {})["vA"]
    return [
        VideoTrace("vA", frame_indices=[0, 40, 80], queries=QUERIES, decision=decision),
        VideoTrace("vB", "missing"),
    ]


def test_each_rule_scored_from_one_run(traces):
    rows = {
        (r["box_choice"], r["item_box_choice"]): r for r in compare_box_choices(build_split(), traces, MatcherConfig(box_choice="best_match", item_box_choice="paired"))
    }
    assert len(rows) == 4 * 3 and [k for k, r in rows.items() if r["run"]] == [("best_match", "paired")]
    # N_P 1 (vA), N_GT 3 (vA vB vC), D 4. best_match names frame 40 (d1): S1 only, score 0.2 * 2/4 = 0.1.
    base = rows[("best_match", "paired")]
    assert (base["s2_f1"], base["s3_f1"], base["s2_videos"], base["frames_changed"]) == (0.0, 0.0, 0, 0)
    assert base["score"] == pytest.approx(0.1)
    # best_score picks d0 (0.6); consensus (window 80: d0-d2 IoU 0.9, each 0.45, tie to d0's closer match)
    # and score x consensus (0.27 vs 0.18 vs 0) too: every level hit, F1 2/4 = 0.5, score 0.5.
    for rule in ("best_score", "consensus", "score_consensus"):
        row = rows[(rule, "paired")]
        assert (row["s2_f1"], row["s3_f1"], row["frames_changed"]) == (0.5, 0.5, 1), rule
        assert (row["frame_box_ok"], row["item_box_ok"], row["s2_videos"]) == (1, 1, 1)
        assert row["score"] == pytest.approx(0.5)


def test_selected_rules_only(traces):
    rows = compare_box_choices(build_split(), traces, MatcherConfig(box_choice="consensus", item_box_choice="paired"), [("consensus", "paired")])
    assert [(r["box_choice"], r["run"]) for r in rows] == [("consensus", True)]
