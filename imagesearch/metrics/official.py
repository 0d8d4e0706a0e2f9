"""The competition's score (SPEC §2): P/R/F1 at three nested levels and their weighted sum.

Definitions (N_P = videos predicted, N_GT = videos with at least one annotated instance_id > 0,
P = TP / N_P, R = TP / N_GT, F1 = 2PR / (P + R), each 0 when its denominator is 0):
- S1: the predicted item is the video's item (the item of an instance > 0 in the video's
  annotation, through `Split.instance_to_item`).
- S2: S1, and the named frame holds an annotated instance of that item. A `frame_index` that is
  not annotated is scored at the nearest annotated frame within ±20; at equal distance the earlier
  frame wins (e.g. 20 -> 0 when 0 and 40 are annotated); beyond ±20 it is a miss at S2 and S3.
- S3: S2, and some `result` entry has `item_box` IoU > 0.5 with a box of instance i in the named
  product image (`img_name` among the predicted item's images) and `frame_box` IoU > 0.5 with a box
  of the same instance i in the (snapped) frame. i ranges over the item's instances in that frame,
  so for a two-piece item each entry is matched against whichever piece its boxes cover, and an
  instance annotated twice in one frame may match either box. Distractors (instance 0) never match.

Choices the official text leaves open:
- A prediction for a video id that is not in the split is counted in N_P and can never be a true
  positive (the official N_P counts every submitted video); it is listed in `unknown_videos`.
- A prediction for a video with no instance > 0 (distractors only) counts in N_P, never in N_GT.
- A video with no annotation file (an `.mp4` that no annotation names) cannot be scored: by default the
  scope is the annotated videos, and a prediction for an unannotated one is set aside as out of scope.
- With `video_ids` (e.g. the videos present on disk) N_GT and the predictions are restricted to those
  videos; predictions for other split videos are set aside (`out_of_scope_videos`), unknown ids
  still count. `scope` in the report says which restriction was used.

Per video (`VideoScore`), beside the levels reached: the rank of the true item in `ranked_items`, the
annotated frame the prediction snaps to, the IoUs of the best (entry, instance) pair, one `reason`
(`REASONS`) and the points it lost. The levels are nested, so the level a video first fails (S1,
S2 or S3) fails every level above it too, for the same reason: one reason per video.

Points lost (score units). Since F1 = 2·TP / (N_P + N_GT) (also when TP = 0), with D = N_P + N_GT,
score = Σ_l w_l·2·TP_l / D and 1 − score = Σ_l w_l·(D − 2·TP_l) / D, where D − 2·TP_l counts 2 per
predicted N_GT video that misses level l, 1 per N_GT video without a prediction and 1 per prediction
outside N_GT. So, with max_reachable = 1 when N_GT > 0 (else 0, and nothing is lost):
- a predicted video with a product loses 2·w_l / D at each level l it misses; fixing it gains exactly
  that (N_P and N_GT do not change);
- a video with a product but no prediction loses w_l / D at each level (1 / D in all);
- a prediction for a video without a product, or an unknown id, loses w_l / D at each level;
and score + Σ over videos and levels of the points lost = max_reachable, exactly (up to rounding).
The shares of abstentions and extra predictions are accounting shares, not marginal gains: adding
or removing a prediction changes D and so every term.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagesearch.data.records import AnnotatedFrame, Split, Video
from imagesearch.metrics.detection import box_iou
from imagesearch.metrics.results import VideoPrediction, parse_results
from imagesearch.metrics.retrieval import topk_item_accuracy

LEVEL_WEIGHTS = {"s1": 0.2, "s2": 0.6, "s3": 0.2}
IOU_THRESHOLD = 0.5  # strict: a pair must exceed it
SNAP_WINDOW = 20  # frames
TOPK = (1, 5, 20)

# Why a video stopped, in the order of the pipeline (the loss tables break ties in this order).
REASONS = {
    "hit": "every level reached",
    "wrong item": "S1: the predicted item is not the video's",
    f"no annotated frame within ±{SNAP_WINDOW}": "S2: frame_index snaps to no annotated frame",
    "item not in frame": "S2: the snapped frame shows no instance of the item",
    "no result entry": "S3: the prediction has an empty `result`",
    f"frame box IoU <= {IOU_THRESHOLD}": "S3: the best pair's product box is right, its frame box is not",
    f"product box IoU <= {IOU_THRESHOLD}": "S3: the best pair's frame box is right, its product box is not",
    f"both boxes IoU <= {IOU_THRESHOLD}": "S3: neither box of the best pair is right",
    "abstained": "no prediction for a video with a product",
    "video missing": "no prediction: the .mp4 is not on disk",
    "video unreadable": "no prediction: the .mp4 could not be decoded",
    "no garment detected": "no prediction: no query box in the sampled frames",
    "no product in video": "a prediction for a video that shows only distractors (outside N_GT)",
    "unknown video": "a prediction for a video id that is not in the split",
}
# The matcher's video status -> the reason of a video left out of result.json.
STATUS_REASONS = {"missing": "video missing", "unreadable": "video unreadable", "no garments": "no garment detected"}


@dataclass
class LevelScore:
    """Counts and P/R/F1 at one level."""

    tp: int
    n_pred: int
    n_gt: int
    precision: float
    recall: float
    f1: float


@dataclass
class VideoScore:
    """How one video fared: the levels it reached, why it stopped and what that cost.

    Attributes:
        video_id, predicted_item (None: no prediction), true_items, in_gt (counted in N_GT).
        frame_index: the predicted frame; snapped_frame: the annotated frame it is scored at (None:
            none within ±20, or no prediction).
        s1, s2, s3: the levels reached.
        matched_entry, matched_instance: the best (entry, instance) pair (see `frame_iou`), set when
            S3 is reached.
        reason: a key of `REASONS` (one per video: the levels are nested).
        rank: 1-based rank of the first true item in `ranked_items`; None without `ranked_items`,
            without a prediction or when no true item is listed.
        frame_iou, item_iou: IoUs of the best (entry, instance) pair, over the result entries and the
            item's instances in the snapped frame: the pair with the most boxes over the threshold,
            then the larger smaller IoU, then the larger larger one. `item_iou` is 0 when the entry's
            product image is not the item's or does not show the instance. With a wrong item,
            `frame_iou` is the best frame-box IoU with the true items' instances in the snapped frame
            (was the box on the product?) and `item_iou` None; both None when S1 holds but S2 does not.
        points_lost: score points lost at each level (see the module docstring), keys s1, s2, s3.
    """

    video_id: str
    predicted_item: str | None
    true_items: list[str]
    in_gt: bool
    frame_index: int | None = None
    snapped_frame: int | None = None
    s1: bool = False
    s2: bool = False
    s3: bool = False
    matched_entry: int | None = None  # index in `result` of the entry of the best pair
    matched_instance: int | None = None
    reason: str = ""
    rank: int | None = None
    frame_iou: float | None = None
    item_iou: float | None = None
    points_lost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LEVEL_WEIGHTS, 0.0))

    @property
    def total_lost(self) -> float:
        """Points lost over the three levels."""
        return sum(self.points_lost.values())


@dataclass
class ScoreReport:
    """The official score and its parts. `to_dict()` gives plain JSON-ready data."""

    s1: LevelScore
    s2: LevelScore
    s3: LevelScore
    score: float
    scope: str  # "all" or "video_ids"
    num_scope_videos: int
    max_reachable: float = 1.0  # 1 when N_GT > 0, else 0: score + all points lost = max_reachable
    unknown_videos: list[str] = field(default_factory=list)
    out_of_scope_videos: list[str] = field(default_factory=list)
    abstained_videos: list[str] = field(default_factory=list)
    topk: dict[str, float] | None = None
    videos: list[VideoScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snap_frame(frame_index: int, annotated: Collection[int], window: int = SNAP_WINDOW) -> int | None:
    """The annotated frame a prediction's `frame_index` is scored at.

    Args:
        frame_index: the predicted frame.
        annotated: indices of the video's annotated frames.
        window: the largest distance allowed.

    Returns:
        The nearest annotated index within `window` (the earlier one on a tie), or None.

    Example:
        >>> snap_frame(20, [0, 40, 80]), snap_frame(21, [0, 40, 80]), snap_frame(61, [0, 40])
        (0, 40, None)
    """
    candidates = [f for f in annotated if abs(f - frame_index) <= window]
    return min(candidates, key=lambda f: (abs(f - frame_index), f)) if candidates else None


def f1_level(tp: int, n_pred: int, n_gt: int) -> LevelScore:
    """P, R and F1 from counts, each 0 where its denominator is 0."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gt if n_gt else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return LevelScore(tp, n_pred, n_gt, p, r, f1)


def video_items(video: Video, split: Split) -> list[str]:
    """The item(s) of a video's annotated instances (> 0), sorted; empty for a distractor-only video."""
    return sorted({split.instance_to_item[i] for i in video.instance_ids if i in split.instance_to_item})


def score(
    split: Split,
    results: Mapping[str, VideoPrediction] | Mapping[str, Any] | str | Path,
    video_ids: Collection[str] | None = None,
    status: Mapping[str, str] | None = None,
) -> ScoreReport:
    """Score predictions against a split's annotations with the competition's rule.

    Args:
        split: the annotated split (`imagesearch.data.reader.load_split`).
        results: parsed predictions (`parse_results`), or a raw `result.json` object or path.
        video_ids: restrict N_GT and the scored predictions to these split videos (None: all).
        status: the matcher's status per video ("missing", "unreadable", "no garments", "ok"): names
            why a video with a product has no prediction (`STATUS_REASONS`; else "abstained").

    Returns:
        A ScoreReport: S1/S2/S3 counts and P/R/F1, the weighted score, top-k item accuracy when
        any prediction has `ranked_items`, and one VideoScore per scored or unpredicted N_GT video,
        each with its reason and the points it lost.

    Raises:
        ResultFormatError: `results` is raw and malformed.
        ValueError: `video_ids` names a video that is not in the split.
    """
    preds = _as_predictions(results)
    if video_ids is None:  # the videos that can be scored: those with an annotation file
        scope_ids = [v for v, video in split.videos.items() if video.annotated]
    else:
        missing = sorted(set(video_ids) - set(split.videos))
        if missing:
            raise ValueError(f"video_ids not in the split {split.root}: {missing}")
        scope_ids = [v for v in split.videos if v in set(video_ids)]
    in_scope = set(scope_ids)
    unknown = [v for v in preds if v not in split.videos]
    out_of_scope = [v for v in preds if v in split.videos and v not in in_scope]
    status = status or {}

    per_video: list[VideoScore] = []
    for vid in scope_ids:
        true_items = video_items(split.videos[vid], split)
        in_gt = bool(split.videos[vid].instance_ids)
        if vid in preds:
            per_video.append(_score_video(preds[vid], split.videos[vid], split, true_items, in_gt))
        elif in_gt:
            reason = STATUS_REASONS.get(status.get(vid, ""), "abstained")
            per_video.append(VideoScore(vid, None, true_items, in_gt, reason=reason))
    for vid in unknown:
        p = preds[vid]
        per_video.append(VideoScore(vid, p.item_id, [], False, frame_index=p.frame_index, reason="unknown video"))

    n_pred = sum(v.predicted_item is not None for v in per_video)
    n_gt = sum(v.in_gt for v in per_video)
    levels = {lv: f1_level(sum(getattr(v, lv) for v in per_video), n_pred, n_gt) for lv in LEVEL_WEIGHTS}
    total = sum(w * levels[lv].f1 for lv, w in LEVEL_WEIGHTS.items())
    _assign_points(per_video, n_pred + n_gt if n_gt else 0)
    return ScoreReport(
        s1=levels["s1"],
        s2=levels["s2"],
        s3=levels["s3"],
        score=total,
        scope="all" if video_ids is None else "video_ids",
        num_scope_videos=len(scope_ids),
        max_reachable=1.0 if n_gt else 0.0,
        unknown_videos=unknown,
        out_of_scope_videos=out_of_scope,
        abstained_videos=[v.video_id for v in per_video if v.in_gt and v.predicted_item is None],
        topk=_topk(preds, per_video),
        videos=per_video,
    )


def _assign_points(per_video: list[VideoScore], denominator: int) -> None:
    """Points lost per video and level (module docstring); `denominator` = N_P + N_GT, 0 when N_GT = 0."""
    for v in per_video:
        for lv, w in LEVEL_WEIGHTS.items():
            if not denominator or getattr(v, lv):
                lost = 0.0
            elif v.in_gt and v.predicted_item is not None:
                lost = 2 * w / denominator  # counted in both N_P and N_GT, and missed
            else:
                lost = w / denominator  # counted in only one of N_P and N_GT
            v.points_lost[lv] = lost


def _as_predictions(results: Any) -> dict[str, VideoPrediction]:
    if isinstance(results, Mapping) and all(isinstance(v, VideoPrediction) for v in results.values()):
        return dict(results)
    return parse_results(results)


def _topk(preds: Mapping[str, VideoPrediction], per_video: list[VideoScore]) -> dict[str, float] | None:
    """Top-k over the in-scope N_GT videos; a prediction without `ranked_items` ranks only its item."""
    scored = {v.video_id for v in per_video}
    if not any(p.ranked_items is not None for vid, p in preds.items() if vid in scored):
        return None
    ranked = {vid: (p.ranked_items if p.ranked_items is not None else [p.item_id]) for vid, p in preds.items()}
    truth = {v.video_id: v.true_items for v in per_video if v.in_gt}
    return topk_item_accuracy(ranked, truth, TOPK)


def _rank(pred: VideoPrediction, true_items: list[str]) -> int | None:
    ranks = [r for r, item in enumerate(pred.ranked_items or [], 1) if item in true_items]
    return ranks[0] if ranks else None


def _score_video(pred: VideoPrediction, video: Video, split: Split, true_items: list[str], in_gt: bool) -> VideoScore:
    vs = VideoScore(video.video_id, pred.item_id, true_items, in_gt, frame_index=pred.frame_index)
    if not in_gt:
        vs.reason = "no product in video"
        return vs
    vs.rank = _rank(pred, true_items)
    frames = {f.frame_index: f for f in video.frames}
    vs.snapped_frame = snap_frame(pred.frame_index, frames)
    frame = frames.get(vs.snapped_frame) if vs.snapped_frame is not None else None
    if pred.item_id not in true_items:
        vs.reason = "wrong item"
        if frame is not None and pred.result:  # was the frame box on the product at least?
            true_boxes = [b.xyxy for b in frame.boxes if split.instance_to_item.get(b.instance_id) in true_items]
            if true_boxes:
                vs.frame_iou = float(box_iou([e.frame_box for e in pred.result], true_boxes).max())
        return vs
    vs.s1 = True
    if frame is None:
        vs.reason = f"no annotated frame within ±{SNAP_WINDOW}"
        return vs
    instances = {b.instance_id for b in frame.boxes if split.instance_to_item.get(b.instance_id) == pred.item_id}
    instances.discard(0)
    if not instances:
        vs.reason = "item not in frame"
        return vs
    vs.s2 = True
    best = _best_pair(pred, frame, split, instances)
    if best is None:
        vs.reason = "no result entry"
        return vs
    (vs.matched_entry, vs.matched_instance), (vs.frame_iou, vs.item_iou) = best
    frame_ok, item_ok = vs.frame_iou > IOU_THRESHOLD, vs.item_iou > IOU_THRESHOLD
    vs.s3 = frame_ok and item_ok
    if vs.s3:
        vs.reason = "hit"
        return vs
    vs.matched_entry = vs.matched_instance = None
    wrong = "product box" if frame_ok else ("frame box" if item_ok else "both boxes")
    vs.reason = f"{wrong} IoU <= {IOU_THRESHOLD}"
    return vs


def _best_pair(
    pred: VideoPrediction, frame: AnnotatedFrame, split: Split, instances: set[int]
) -> tuple[tuple[int, int], tuple[float, float]] | None:
    """((entry index, instance id), (frame IoU, item IoU)) of the best pair (see `VideoScore`), None
    without entries. An entry's IoU with an instance is its best over that instance's boxes, since
    an instance may be annotated twice in one frame or image."""
    item = split.items.get(pred.item_id)
    images = {im.stem: im for im in item.images} if item is not None else {}
    best: tuple[tuple[int, float, float], tuple[int, int], tuple[float, float]] | None = None
    for idx, entry in enumerate(pred.result):
        image = images.get(entry.img_name)
        for inst in sorted(instances):
            frame_boxes = [b.xyxy for b in frame.boxes if b.instance_id == inst]
            item_boxes = [b.xyxy for b in image.boxes if b.instance_id == inst] if image is not None else []
            f = float(box_iou([entry.frame_box], frame_boxes).max())
            i = float(box_iou([entry.item_box], item_boxes).max()) if item_boxes else 0.0
            key = (int(f > IOU_THRESHOLD) + int(i > IOU_THRESHOLD), min(f, i), max(f, i))
            if best is None or key > best[0]:  # strict: the first entry wins a tie
                best = (key, (idx, inst), (f, i))
    return None if best is None else (best[1], best[2])
