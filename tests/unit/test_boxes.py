"""The rules that pick the reported frame and boxes (matching/boxes.py), on hand-made votes.

The video below: item A gets 4 votes, B 1. The boxes of the voters for A, all 100 wide from x = 0:
d0 frame 0 height 200, d1 frame 40 height 100, d2 frame 80 height 180, d3 frame 120 height 200.
Pairwise IoU (heights nest): d0-d1 0.5, d0-d2 0.9, d0-d3 1.0, d1-d2 100/180 = 0.5556, d1-d3 0.5,
d2-d3 0.9. d4 (frame 40, elsewhere) votes B but holds the closest crop of A (0.05): the vote's evidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagesearch.matching.boxes import agreement, choose_boxes, item_candidates
from imagesearch.matching.decisions import MatcherConfig, decide
from imagesearch.matching.voting import Evidence, FrameCandidates, Neighbour, VideoDecision, vote

REPO = Path(__file__).resolve().parents[2]
P1, P2, P3 = (1.0, 1.0, 50.0, 50.0), (2.0, 2.0, 60.0, 60.0), (3.0, 3.0, 70.0, 70.0)


def det(frame: int, height: float, score: float, *nbs: tuple, x: float = 0.0) -> FrameCandidates:
    """nbs: (item, image, box, distance, instance[, the box's detector score])."""
    neighbours = [Neighbour(item, img, box, dist, None, inst, *rest) for item, img, box, dist, inst, *rest in nbs]
    return FrameCandidates(frame, (x, 0.0, x + 100.0, height), score, None, neighbours)


FRAMES = [
    det(0, 200, 0.5, ("A", "0.jpg", P1, 0.10, 0)),
    det(40, 100, 0.95, ("A", "1.jpg", P2, 0.30, 0)),
    det(80, 180, 0.6, ("A", "1.jpg", P2, 0.20, 0)),
    det(120, 200, 0.4, ("A", "1.jpg", P2, 0.25, 0)),
    det(40, 100, 0.9, ("B", "9.jpg", P3, 0.01, 0), ("A", "2.jpg", P3, 0.05, 0), x=200.0),
]


def chosen(frame_rule: str, item_rule: str = "paired", window: int = 80) -> tuple[int, tuple, str, tuple]:
    d = choose_boxes(vote(FRAMES), FRAMES, frame_rule, item_rule, window=window)
    (ev,) = d.results
    return ev.frame_index, ev.frame_box, ev.img_name, ev.item_box


def test_agreement_hand_values():
    boxes = [f.box for f in FRAMES[:4]]
    frames = [0, 40, 80, 120]
    # window 80: d0 sees d1, d2 -> (0.5 + 0.9) / 2; d1 sees all three -> (0.5 + 0.5556 + 0.5) / 3;
    # d2 sees all three -> (0.9 + 0.5556 + 0.9) / 3; d3 sees d1, d2 -> (0.5 + 0.9) / 2
    got = agreement(np.array(boxes), np.array(frames), 80)
    assert got == pytest.approx([0.7, (1 + 1 / 1.8) / 3, (1.8 + 1 / 1.8) / 3, 0.7])
    # window 0: every other frame; d0 and d3 tie at (0.5 + 0.9 + 1.0) / 3 = 0.8
    assert agreement(np.array(boxes), np.array(frames), 0) == pytest.approx(
        [0.8, (1 + 1 / 1.8) / 3, (1.8 + 1 / 1.8) / 3, 0.8]
    )


def test_voters_and_candidates():
    cands = item_candidates(FRAMES, "A")
    assert [(c.det.frame_index, c.voted) for c in cands] == [
        (0, True),
        (40, True),
        (80, True),
        (120, True),
        (40, False),
    ]
    assert cands[-1].match.img_name == "2.jpg"  # d4's closest crop of A, not its vote


def test_best_match_is_the_votes_evidence():
    d = vote(FRAMES)
    assert d.item_id == "A" and d.results == (Evidence(40, (200.0, 0.0, 300.0, 100.0), "2.jpg", P3, 0.05),)
    assert choose_boxes(d, FRAMES, "best_match", "paired") == d
    # from a decision made under another rule, best_match / paired gives the vote's evidence back
    assert choose_boxes(choose_boxes(d, FRAMES, "consensus"), FRAMES, "best_match", "paired") == d
    # the general path (best_match frame, most_matched crop) picks the same detection: d4
    assert chosen("best_match", "most_matched")[:2] == (40, (200.0, 0.0, 300.0, 100.0))


@pytest.mark.parametrize(
    ("frame_rule", "item_rule", "window", "expected"),
    [
        ("best_score", "paired", 80, (40, (0.0, 0.0, 100.0, 100.0), "1.jpg", P2)),  # d1, score 0.95 among voters
        ("consensus", "paired", 80, (80, (0.0, 0.0, 100.0, 180.0), "1.jpg", P2)),  # d2, 0.785
        # window 0: d0 and d3 tie at 0.8; d0's match is closer (0.10 < 0.25)
        ("consensus", "paired", 0, (0, (0.0, 0.0, 100.0, 200.0), "0.jpg", P1)),
        # the same detection, but the crop matched by 3 voters (1.jpg) instead of d0's own (0.jpg, 1 voter)
        ("consensus", "most_matched", 0, (0, (0.0, 0.0, 100.0, 200.0), "1.jpg", P2)),
        # score x agreement at 80: d0 0.35, d1 0.95 * 0.5185 = 0.493, d2 0.6 * 0.785 = 0.471, d3 0.28
        ("score_consensus", "paired", 80, (40, (0.0, 0.0, 100.0, 100.0), "1.jpg", P2)),
    ],
)
def test_rules_on_constructed_votes(frame_rule, item_rule, window, expected):
    assert chosen(frame_rule, item_rule, window) == expected


def test_most_matched_keeps_the_chosen_piece():
    # a two-piece item S: d0 (score 0.9) matched piece 201 in 0.jpg; d1 and d2 matched piece 202 in 1.jpg
    frames = [
        det(0, 200, 0.9, ("S", "0.jpg", P1, 0.3, 201)),
        det(40, 200, 0.5, ("S", "1.jpg", P2, 0.2, 202)),
        det(80, 200, 0.5, ("S", "1.jpg", P2, 0.2, 202)),
    ]
    d = choose_boxes(vote(frames), frames, "best_score", "most_matched")
    assert d.results == (Evidence(0, (0.0, 0.0, 100.0, 200.0), "0.jpg", P1, 0.3),)  # not 202's crop


def test_image_score_takes_the_whole_garment_not_the_other_piece():
    # Dress D, product image 0.jpg: the detector found the whole dress (0..100 x 0..200, score 0.9), its top
    # (0..100 x 0..90, 0.6; IoU with the dress 0.45) and a handbag far off (200..260, 0.95). The frame's
    # detection matched the top; the whole dress is among another voter's neighbours.
    dress, top, bag = (0.0, 0.0, 100.0, 200.0), (0.0, 0.0, 100.0, 90.0), (200.0, 0.0, 260.0, 60.0)
    frames = [
        det(0, 200, 0.9, ("D", "0.jpg", top, 0.1, 0, 0.6), ("D", "0.jpg", bag, 0.4, 0, 0.95)),
        det(40, 200, 0.5, ("D", "0.jpg", top, 0.2, 0, 0.6), ("D", "0.jpg", dress, 0.3, 0, 0.9)),
        det(80, 200, 0.5, ("D", "1.jpg", dress, 0.05, 0, 0.99)),  # another image: never mixed in
    ]
    d = choose_boxes(vote(frames), frames, "best_score", "image_score")
    assert (d.results[0].img_name, d.results[0].item_box) == ("0.jpg", dress)  # not the bag: no overlap
    assert choose_boxes(vote(frames), frames, "best_score", "paired").results[0].item_box == top
    # With the dress scored below the top, the paired crop stays; equal scores keep it too.
    for score in (0.5, 0.6):
        frames[1].neighbours[1] = frames[1].neighbours[1]._replace(box_score=score)
        assert choose_boxes(vote(frames), frames, "best_score", "image_score").results[0].item_box == top


def test_unchanged_when_nothing_to_choose():
    abstaining = VideoDecision(None)
    assert choose_boxes(abstaining, FRAMES, "consensus") is abstaining
    pair = VideoDecision(
        "A", vote(FRAMES).ranked, (Evidence(0, P1, "0.jpg", P1, 0.1), Evidence(0, P2, "1.jpg", P2, 0.2))
    )
    assert choose_boxes(pair, FRAMES, "consensus") is pair  # a two-piece result stays as found
    with pytest.raises(ValueError, match="frame rule"):
        choose_boxes(vote(FRAMES), FRAMES, "largest")


def test_decide_applies_the_configured_rule():
    base = decide({"v": FRAMES}, MatcherConfig(box_choice="best_match"), {})["v"]
    assert base.results == vote(FRAMES).results  # "best_match" reports the vote's own evidence
    assert MatcherConfig().box_choice == "best_score"  # the default, chosen on validation (matching.boxes)
    d = decide({"v": FRAMES}, MatcherConfig(box_choice="consensus", box_window=80), {})["v"]
    assert (d.item_id, d.frame_index, d.results[0].frame_box) == ("A", 80, (0.0, 0.0, 100.0, 180.0))
    assert d.distance == base.distance  # abstention still reads the vote's evidence distance
    with pytest.raises(ValueError, match="box_choice"):
        MatcherConfig(item_box_choice="nearest")  # a typo fails when the config is made, not after the run
    cfg = MatcherConfig()
    cfg.box_choice = "largest"
    with pytest.raises(ValueError, match="box_choice"):
        decide({"v": FRAMES}, cfg, {})


def test_box_rules_from_the_command_line():
    from imagesearch.config import load_config
    from imagesearch.evaluation.evaluate import EvalRun

    cfg = load_config(EvalRun, REPO / "configs/eval/default.yaml", ["matcher.box_choice=consensus"])
    assert (cfg.matcher.box_choice, cfg.matcher.item_box_choice) == ("consensus", "image_score")  # the default
    with pytest.raises(ValueError, match="consensu'"):
        load_config(EvalRun, REPO / "configs/eval/default.yaml", ["matcher.box_choice=consensu"])
