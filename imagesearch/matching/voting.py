"""Per-video decision rules of the matcher (SPEC §3 stage 7, §4): de-duplicate boxes, vote, two-piece sets.

Input, per video: one `FrameCandidates` per kept detection (its frame, box, score, category and
its nearest gallery crops); output: a `VideoDecision` (the ranked items, the chosen item and the
evidence that becomes the `result.json` entry). Across-video rules (one-to-one assignment,
abstention, the result entry) are in `assign.py`. A typical order:

    frames = dedupe_frames(frames, iou_thr=0.5)
    decision = vote(frames, top_n=1, weighting="count", category_filter=True)
    ... assign_one_to_one over all videos ...
    decision = two_piece_search(decision, frames, item_instances)
    decision = abstain(decision, max_distance)

Categories are compared with `==`, so detections and gallery crops must carry categories after the
same merging (int ids or names).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import batched_nms, nms

__all__ = [
    "WEIGHTINGS",
    "Evidence",
    "FrameCandidates",
    "ItemScore",
    "Neighbour",
    "VideoDecision",
    "category_consistent",
    "dedupe_boxes",
    "dedupe_frames",
    "two_piece_search",
    "vote",
    "vote_margins",
    "votes_of",
]

BoxXYXY = tuple[float, float, float, float]
Category = int | str | None


class Neighbour(NamedTuple):
    """One gallery crop near a detection (a plain tuple in this field order is accepted too).

    Attributes:
        item_id: the product.
        img_name: the product image, e.g. "3.jpg" or "3".
        item_box: (x1, y1, x2, y2) of the crop in that product image.
        distance: squared Euclidean (or any) distance to the detection's feature; smaller is closer.
        item_category: the crop's (merged) category, None when unknown.
        instance_id: the crop's instance (tells the pieces of a two-piece set apart); 0 when unknown.
        box_score: the detector's score of the crop's box in its product image (1.0 for an annotated box).
    """

    item_id: str
    img_name: str
    item_box: BoxXYXY
    distance: float
    item_category: Category = None
    instance_id: int = 0
    box_score: float = 1.0


@dataclass
class FrameCandidates:
    """A kept detection of one frame and its nearest gallery crops.

    `neighbours` may be given as tuples; they become `Neighbour`s sorted by distance (stable).
    """

    frame_index: int
    box: BoxXYXY
    det_score: float
    category: Category
    neighbours: list[Neighbour] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.box) != 4:
            raise ValueError(f"frame {self.frame_index}: box must be (x1, y1, x2, y2), got {self.box}")
        self.box = tuple(float(v) for v in self.box)  # type: ignore[assignment]
        nbs = [nb if isinstance(nb, Neighbour) else Neighbour(*nb) for nb in self.neighbours]
        self.neighbours = sorted(nbs, key=lambda nb: nb.distance)


@dataclass(frozen=True)
class Evidence:
    """One (detection, gallery crop) pair: what a `result.json` entry is made of."""

    frame_index: int
    frame_box: BoxXYXY
    img_name: str
    item_box: BoxXYXY
    distance: float


@dataclass(frozen=True)
class ItemScore:
    """An item's standing in a video's vote.

    Attributes:
        item_id: the product.
        score: summed vote weight (0 for an item that only appeared among the neighbours).
        votes: detections that voted for it.
        mean_distance: mean distance of those votes (inf without votes): the tie-breaker.
        evidence: its closest (detection, gallery crop) pair in the video.
    """

    item_id: str
    score: float
    votes: int
    mean_distance: float
    evidence: Evidence


@dataclass(frozen=True)
class VideoDecision:
    """The matcher's answer for one video.

    Attributes:
        item_id: the chosen item, or None (abstain).
        ranked: every item seen among the neighbours, best first (for top-k metrics).
        results: the result entries, all in one frame: the chosen item's evidence, or two for a
            two-piece set; empty when abstaining.
    """

    item_id: str | None
    ranked: tuple[ItemScore, ...] = ()
    results: tuple[Evidence, ...] = ()

    @property
    def abstained(self) -> bool:
        return self.item_id is None

    @property
    def frame_index(self) -> int | None:
        return self.results[0].frame_index if self.results else None

    def score_of(self, item_id: str) -> ItemScore | None:
        """The ranked entry of `item_id`, or None."""
        return next((s for s in self.ranked if s.item_id == item_id), None)

    @property
    def distance(self) -> float:
        """The chosen item's evidence distance (its closest detection-crop pair); inf when abstaining."""
        score = self.score_of(self.item_id) if self.item_id is not None else None
        return score.evidence.distance if score is not None else float("inf")


def dedupe_boxes(
    boxes: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor, iou_thr: float = 0.5
) -> np.ndarray:
    """Drop duplicate / occluded boxes of one frame, keeping the highest-scoring (torchvision NMS).

    Args:
        boxes: (K, 4) x1, y1, x2, y2.
        scores: (K,) detection scores.
        iou_thr: a box whose IoU with a higher-scoring kept box exceeds this is dropped.

    Returns:
        (K',) int64 indices of the kept boxes, by decreasing score.

    >>> dedupe_boxes(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]), np.array([0.6, 0.9, 0.5])).tolist()
    [1, 2]
    """
    b = torch.as_tensor(boxes, dtype=torch.float32)
    s = torch.as_tensor(scores, dtype=torch.float32)
    if b.ndim != 2 or b.shape[1] != 4 or s.shape != (b.shape[0],):
        raise ValueError(f"dedupe_boxes: boxes must be (K, 4) and scores (K,), got {tuple(b.shape)}, {tuple(s.shape)}")
    return nms(b, s, iou_thr).cpu().numpy().astype(np.int64)


def dedupe_frames(frames: Sequence[FrameCandidates], iou_thr: float = 0.5) -> list[FrameCandidates]:
    """`dedupe_boxes` within each frame (one batched NMS over the whole video).

    Args:
        frames: detections of one video, any frames.
        iou_thr: NMS IoU threshold.

    Returns:
        The kept detections, in their input order.
    """
    if not frames:
        return []
    boxes = torch.tensor([f.box for f in frames], dtype=torch.float32)
    scores = torch.tensor([f.det_score for f in frames], dtype=torch.float32)
    groups = torch.tensor([f.frame_index for f in frames], dtype=torch.int64)
    keep = sorted(batched_nms(boxes, scores, groups, iou_thr).tolist())
    return [frames[i] for i in keep]


def category_consistent(frames: Iterable[FrameCandidates]) -> list[FrameCandidates]:
    """Keep only the neighbours whose item category equals the detection's category.

    A detection whose category is None, or for which no neighbour has its category, keeps all its
    neighbours (filtering must not silence a detection).

    Args:
        frames: detections with (merged) categories.

    Returns:
        New `FrameCandidates` with filtered neighbour lists.
    """
    out = []
    for det in frames:
        same = [nb for nb in det.neighbours if det.category is not None and nb.item_category == det.category]
        out.append(dataclasses.replace(det, neighbours=same or list(det.neighbours)))
    return out


# Vote weight of a detection's vote of rank r (0 = its nearest item) at `distance`, whose `margin` is how much
# farther the next distinct item lies (the ratio test's gap: a garment that is not in the gallery sits about as
# close to several items, the shown product clearly closer to its own).
WEIGHTINGS: dict[str, Callable[[int, float, float], float]] = {
    "count": lambda rank, distance, margin: 1.0,
    "rank": lambda rank, distance, margin: 1.0 / (rank + 1),
    "inverse_distance": lambda rank, distance, margin: 1.0 / (distance + 1e-6),
    "margin": lambda rank, distance, margin: margin,
}


def votes_of(det: FrameCandidates, top_n: int) -> list[Neighbour]:
    """What one detection votes for: the closest crop of each of its `top_n` nearest distinct items, nearest first."""
    seen: dict[str, Neighbour] = {}
    for nb in det.neighbours:  # sorted by distance: the first crop of an item is its closest
        if len(seen) == top_n:
            break
        seen.setdefault(nb.item_id, nb)
    return list(seen.values())


def vote_margins(det: FrameCandidates, votes: Sequence[Neighbour]) -> list[float]:
    """How much farther the next distinct item lies than each vote's item (>= 0).

    Args:
        det: the detection (its neighbours sorted by distance).
        votes: `votes_of(det, top_n)`.

    Returns:
        One margin per vote: the distance of the closest crop of the next distinct item among the
        neighbours, minus the vote's distance; when no other item is among them, the farthest
        neighbour's distance minus the vote's (a lower bound).

    >>> det = FrameCandidates(0, (0, 0, 1, 1), 1.0, None, [("a", "0", (0, 0, 1, 1), 0.2), ("a", "1", (0, 0, 1, 1), 0.3),
    ...                                                    ("b", "0", (0, 0, 1, 1), 0.5)])
    >>> [round(m, 6) for m in vote_margins(det, votes_of(det, 1))]
    [0.3]
    """
    ranked = votes_of(det, len(votes) + 1)
    last = det.neighbours[-1].distance if det.neighbours else 0.0
    out = []
    for i, nb in enumerate(votes):
        following = ranked[i + 1].distance if i + 1 < len(ranked) else last
        out.append(max(following - nb.distance, 0.0))
    return out


def _ranking_key(s: ItemScore) -> tuple[float, float, float, str]:
    # Scores equal to 1e-9 are ties (rank weights such as 1/3 + 2/3 are not exact in floating point).
    return (-round(s.score, 9), s.mean_distance, s.evidence.distance, s.item_id)


def vote(
    frames: Iterable[FrameCandidates],
    top_n: int = 1,
    weighting: str = "count",
    category_filter: bool = False,
    score_power: float = 0.0,
) -> VideoDecision:
    """The video's item by a vote of its detections.

    Each detection votes for its `top_n` nearest distinct items (an item counted once, at its
    closest crop); vote r (0 = nearest) weighs 1 ("count"), 1/(r+1) ("rank"), 1/(distance+1e-6)
    ("inverse_distance") or the margin to the next distinct item ("margin", `vote_margins`), times the detection's score to the power `score_power` (0: every detection
    alike, the original vote; 2: a box at score 0.3 counts a ninth of one at 0.9). The item with the
    highest summed weight wins; ties go to the smaller mean distance of the votes, then to the smaller
    evidence distance, then to the smaller item id. The evidence is the (detection, crop) pair of the
    winning item with the smallest distance over the whole video (ties: the earlier frame).

    Args:
        frames: the video's kept detections and their neighbours.
        top_n: distinct items each detection votes for.
        weighting: a key of `WEIGHTINGS`.
        category_filter: apply `category_consistent` first.
        score_power: >= 0; weigh each detection's votes by det_score ** score_power.

    Returns:
        A `VideoDecision`; `item_id` None when no detection has a neighbour.
    """
    if weighting not in WEIGHTINGS or top_n < 1 or not score_power >= 0:
        raise ValueError(
            f"vote: weighting must be one of {sorted(WEIGHTINGS)}, top_n >= 1 and score_power >= 0, "
            f"got {weighting!r}, {top_n}, {score_power}"
        )
    dets = category_consistent(frames) if category_filter else list(frames)
    weight = WEIGHTINGS[weighting]
    score: dict[str, float] = defaultdict(float)
    dist_sum: dict[str, float] = defaultdict(float)
    votes: dict[str, int] = defaultdict(int)
    evidence: dict[str, Evidence] = {}
    for det in dets:
        confidence = max(det.det_score, 0.0) ** score_power  # 0 ** 0 == 1: power 0 is the plain vote
        for nb in det.neighbours:
            ev = Evidence(det.frame_index, det.box, nb.img_name, tuple(nb.item_box), float(nb.distance))
            old = evidence.get(nb.item_id)
            if old is None or (ev.distance, ev.frame_index) < (old.distance, old.frame_index):
                evidence[nb.item_id] = ev
        chosen = votes_of(det, top_n)
        margins = vote_margins(det, chosen) if weighting == "margin" else [0.0] * len(chosen)
        for rank, (nb, margin) in enumerate(zip(chosen, margins, strict=True)):
            score[nb.item_id] += weight(rank, nb.distance, margin) * confidence
            dist_sum[nb.item_id] += nb.distance
            votes[nb.item_id] += 1
    ranked = sorted(
        (
            ItemScore(i, score[i], votes[i], dist_sum[i] / votes[i] if votes[i] else float("inf"), ev)
            for i, ev in evidence.items()
        ),
        key=_ranking_key,
    )
    if not ranked:
        return VideoDecision(item_id=None)
    return VideoDecision(item_id=ranked[0].item_id, ranked=tuple(ranked), results=(ranked[0].evidence,))


def _best_piece_matches(det: FrameCandidates, item_id: str, pieces: set[int]) -> dict[int, Neighbour]:
    best: dict[int, Neighbour] = {}
    for nb in det.neighbours:  # sorted by distance: the first per piece is its best
        if nb.item_id == item_id and nb.instance_id in pieces and nb.instance_id not in best:
            best[nb.instance_id] = nb
    return best


def two_piece_search(
    decision: VideoDecision,
    frames: Iterable[FrameCandidates],
    item_instances: Mapping[str, Collection[int]],
    max_distance: float = float("inf"),
) -> VideoDecision:
    """Two result entries when the chosen item is a two-piece set seen as two detections in one frame.

    For an item with two or more instances (pieces, e.g. a top and a skirt, from the image
    annotations: `item_instances[item_id]`), look for a frame with two different detections whose
    closest crops of that item are two different pieces; among such pairs take the one with the
    smallest summed distance (ties: the earlier frame), both distances <= `max_distance`. Pass the
    unfiltered detections: the pieces of a set have different categories.

    Args:
        decision: the video's decision (abstained decisions are returned unchanged).
        frames: the video's kept detections; their neighbours need `instance_id`.
        item_instances: item id -> its instance ids (> 0).
        max_distance: the largest distance a piece match may have.

    Returns:
        The decision with two `results` (ordered by distance, both in the chosen frame), or the
        decision unchanged when the item is not a set or no frame shows two pieces.
    """
    item = decision.item_id
    if item is None:
        return decision
    pieces = {int(i) for i in item_instances.get(item, ()) if int(i) > 0}
    if len(pieces) < 2:
        return decision
    by_frame: dict[int, list[tuple[FrameCandidates, dict[int, Neighbour]]]] = defaultdict(list)
    for det in frames:
        matches = _best_piece_matches(det, item, pieces)
        if matches:
            by_frame[det.frame_index].append((det, matches))
    best: tuple[float, tuple[Evidence, Evidence]] | None = None
    for frame_index in sorted(by_frame):
        for (det_a, ma), (det_b, mb) in itertools.combinations(by_frame[frame_index], 2):
            for (pa, nba), (pb, nbb) in itertools.product(ma.items(), mb.items()):
                if pa == pb or max(nba.distance, nbb.distance) > max_distance:
                    continue
                cost = nba.distance + nbb.distance
                if best is None or cost < best[0]:
                    pair = (
                        Evidence(frame_index, det_a.box, nba.img_name, tuple(nba.item_box), float(nba.distance)),
                        Evidence(frame_index, det_b.box, nbb.img_name, tuple(nbb.item_box), float(nbb.distance)),
                    )
                    best = (cost, tuple(sorted(pair, key=lambda e: e.distance)))  # type: ignore[assignment]
    if best is None:
        return decision
    return dataclasses.replace(decision, results=best[1])
