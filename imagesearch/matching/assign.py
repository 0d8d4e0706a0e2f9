"""Decision rules across videos and the `result.json` entry (SPEC §2, §4).

- `assign_one_to_one`: each item goes to at most one video (in the competition every video shows a
  different item), by a Hungarian assignment on the vote scores.
- `abstain`: no prediction when the evidence is too far (a left-out video costs recall but not
  precision).
- `to_result_entry` / `decisions_to_results`: the per-video `result.json` format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from imagesearch.matching.voting import VideoDecision

__all__ = ["abstain", "assign_one_to_one", "decisions_to_results", "to_result_entry"]


def _choose(decision: VideoDecision, item_id: str) -> VideoDecision:
    if item_id == decision.item_id:
        return decision  # keeps two-piece results if any
    score = decision.score_of(item_id)
    if score is None:
        raise ValueError(f"item {item_id!r} is not in the decision's ranked list")
    return dataclasses.replace(decision, item_id=item_id, results=(score.evidence,))


def _drop(decision: VideoDecision) -> VideoDecision:
    return dataclasses.replace(decision, item_id=None, results=())


def assign_one_to_one(decisions: Mapping[str, VideoDecision], fallback: bool = True) -> dict[str, VideoDecision]:
    """Give each item to at most one video, maximising the total vote score.

    The score matrix holds, for every predicting video (rows) and every item voted for by some
    video (columns), that video's vote score for the item (0 when it gave it no vote);
    `scipy.optimize.linear_sum_assignment(..., maximize=True)` picks the one-to-one assignment with
    the largest total. A video assigned an item it voted for predicts it (its evidence becomes the
    result). The other videos have lost: with `fallback`, in order of their original winner's score
    (highest first, then video id), each takes the first item of its own ranked list (voted or only
    seen among its neighbours) that no video holds yet, else it abstains; without `fallback` they
    abstain. Abstaining inputs stay as they are; `ranked` lists are never changed.

    Args:
        decisions: video id -> decision (from `vote`).
        fallback: let losing videos take their next-best unused item.

    Returns:
        video id -> decision, with no item chosen twice.
    """
    out = dict(decisions)
    videos = sorted(v for v, d in decisions.items() if not d.abstained)
    items = sorted({s.item_id for v in videos for s in decisions[v].ranked if s.votes > 0})
    scores = np.zeros((len(videos), len(items)))
    col = {item: j for j, item in enumerate(items)}
    for i, v in enumerate(videos):
        for s in decisions[v].ranked:
            if s.votes > 0:
                scores[i, col[s.item_id]] = s.score
    rows, cols = linear_sum_assignment(scores, maximize=True) if items else ([], [])
    used: set[str] = set()
    losers = set(videos)
    for i, j in zip(rows, cols, strict=True):
        if scores[i, j] > 0:
            out[videos[i]] = _choose(decisions[videos[i]], items[j])
            used.add(items[j])
            losers.discard(videos[i])

    def winner_score(v: str) -> float:
        top = decisions[v].score_of(decisions[v].item_id)  # type: ignore[arg-type]
        return top.score if top is not None else 0.0

    for v in sorted(losers, key=lambda v: (-winner_score(v), v)):
        free = [s.item_id for s in decisions[v].ranked if s.item_id not in used] if fallback else []
        if free:
            out[v] = _choose(decisions[v], free[0])
            used.add(free[0])
        else:
            out[v] = _drop(decisions[v])
    return out


def abstain(decision: VideoDecision, max_distance: float) -> VideoDecision:
    """Abstain when the chosen item's evidence distance exceeds `max_distance`.

    A distance equal to the threshold is kept. `ranked` is kept (top-k metrics still use it).

    Args:
        decision: a video's decision.
        max_distance: the largest evidence distance that still predicts.

    Returns:
        The decision, or an abstaining copy (item_id None, no results).
    """
    if decision.abstained or decision.distance <= max_distance:
        return decision
    return _drop(decision)


def _int_box(box: tuple[float, ...]) -> list[int]:
    return [int(round(float(v))) for v in box]


def to_result_entry(decision: VideoDecision) -> dict[str, Any]:
    """A video's entry of `result.json` (SPEC §2), plus its ranked item ids.

    Args:
        decision: a non-abstaining decision.

    Returns:
        {"item_id", "frame_index", "result": [{"img_name" (no .jpg), "item_box", "frame_box"}]
        with integer boxes, "ranked_items": item ids best first, the chosen item first}.

    Raises:
        ValueError: the decision abstains (leave the video out of result.json).
    """
    if decision.abstained or not decision.results:
        raise ValueError("an abstaining decision has no result entry; leave the video out of result.json")
    ranked = [s.item_id for s in decision.ranked if s.item_id != decision.item_id]
    return {
        "item_id": decision.item_id,
        "frame_index": int(decision.results[0].frame_index),
        "result": [
            {
                "img_name": PurePosixPath(e.img_name).stem,
                "item_box": _int_box(e.item_box),
                "frame_box": _int_box(e.frame_box),
            }
            for e in decision.results
        ],
        "ranked_items": [decision.item_id, *ranked],
    }


def decisions_to_results(decisions: Mapping[str, VideoDecision]) -> dict[str, dict[str, Any]]:
    """`result.json` content: video id -> entry, abstaining videos left out.

    Args:
        decisions: video id -> decision.

    Returns:
        video id -> `to_result_entry(decision)`, sorted by video id.
    """
    return {v: to_result_entry(d) for v, d in sorted(decisions.items()) if not d.abstained}
