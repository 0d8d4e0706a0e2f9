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
    """How one video fared: the levels it reached and why it stopped (for the report page).

    `reason` is one of: "hit", "abstained", "unknown video", "no product in video", "wrong item",
    "no annotated frame within ±20", "item not in frame", "no box pair with IoU > 0.5".
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
    matched_entry: int | None = None  # index in `result` of the first entry that hit S3
    matched_instance: int | None = None
    reason: str = ""


@dataclass
class ScoreReport:
    """The official score and its parts. `to_dict()` gives plain JSON-ready data."""

    s1: LevelScore
    s2: LevelScore
    s3: LevelScore
    score: float
    scope: str  # "all" or "video_ids"
    num_scope_videos: int
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
) -> ScoreReport:
    """Score predictions against a split's annotations with the competition's rule.

    Args:
        split: the annotated split (`imagesearch.data.reader.load_split`).
        results: parsed predictions (`parse_results`), or a raw `result.json` object or path.
        video_ids: restrict N_GT and the scored predictions to these split videos (None: all).

    Returns:
        A ScoreReport: S1/S2/S3 counts and P/R/F1, the weighted score, top-k item accuracy when
        any prediction has `ranked_items`, and one VideoScore per scored or abstained video.

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

    per_video: list[VideoScore] = []
    for vid in scope_ids:
        true_items = video_items(split.videos[vid], split)
        in_gt = bool(split.videos[vid].instance_ids)
        if vid in preds:
            per_video.append(_score_video(preds[vid], split.videos[vid], split, true_items, in_gt))
        elif in_gt:
            per_video.append(VideoScore(vid, None, true_items, in_gt, reason="abstained"))
    for vid in unknown:
        p = preds[vid]
        per_video.append(VideoScore(vid, p.item_id, [], False, frame_index=p.frame_index, reason="unknown video"))

    n_pred = sum(v.predicted_item is not None for v in per_video)
    n_gt = sum(v.in_gt for v in per_video)
    levels = {lv: f1_level(sum(getattr(v, lv) for v in per_video), n_pred, n_gt) for lv in LEVEL_WEIGHTS}
    total = sum(w * levels[lv].f1 for lv, w in LEVEL_WEIGHTS.items())
    return ScoreReport(
        s1=levels["s1"],
        s2=levels["s2"],
        s3=levels["s3"],
        score=total,
        scope="all" if video_ids is None else "video_ids",
        num_scope_videos=len(scope_ids),
        unknown_videos=unknown,
        out_of_scope_videos=out_of_scope,
        abstained_videos=[v.video_id for v in per_video if v.reason == "abstained"],
        topk=_topk(preds, per_video),
        videos=per_video,
    )


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


def _score_video(pred: VideoPrediction, video: Video, split: Split, true_items: list[str], in_gt: bool) -> VideoScore:
    vs = VideoScore(video.video_id, pred.item_id, true_items, in_gt, frame_index=pred.frame_index)
    if not in_gt:
        vs.reason = "no product in video"
        return vs
    if pred.item_id not in true_items:
        vs.reason = "wrong item"
        return vs
    vs.s1 = True
    frames = {f.frame_index: f for f in video.frames}
    vs.snapped_frame = snap_frame(pred.frame_index, frames)
    if vs.snapped_frame is None:
        vs.reason = f"no annotated frame within ±{SNAP_WINDOW}"
        return vs
    frame = frames[vs.snapped_frame]
    instances = {b.instance_id for b in frame.boxes if split.instance_to_item.get(b.instance_id) == pred.item_id}
    instances.discard(0)
    if not instances:
        vs.reason = "item not in frame"
        return vs
    vs.s2 = True
    hit = _localisation_hit(pred, frame, split, instances)
    if hit is None:
        vs.reason = f"no box pair with IoU > {IOU_THRESHOLD}"
        return vs
    vs.s3 = True
    vs.matched_entry, vs.matched_instance = hit
    vs.reason = "hit"
    return vs


def _localisation_hit(
    pred: VideoPrediction, frame: AnnotatedFrame, split: Split, instances: set[int]
) -> tuple[int, int] | None:
    """(entry index, instance id) of the first entry whose two boxes both match one instance, or None."""
    item = split.items.get(pred.item_id)
    images = {im.stem: im for im in item.images} if item is not None else {}
    for idx, entry in enumerate(pred.result):
        image = images.get(entry.img_name)
        if image is None:
            continue
        for inst in sorted(instances):
            item_boxes = [b.xyxy for b in image.boxes if b.instance_id == inst]
            frame_boxes = [b.xyxy for b in frame.boxes if b.instance_id == inst]
            if not item_boxes or not frame_boxes:
                continue
            if (
                box_iou([entry.item_box], item_boxes).max() > IOU_THRESHOLD
                and box_iou([entry.frame_box], frame_boxes).max() > IOU_THRESHOLD
            ):
                return idx, inst
    return None
