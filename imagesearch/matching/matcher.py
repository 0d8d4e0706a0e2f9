"""The per-video query pipeline (SPEC §3 stage 7): frames -> garments -> gallery neighbours -> decisions.

Per video: sample frames evenly (`sample_frames`), decode them (`data.video.read_frames`), find the
garments (the detector, de-duplicated by NMS keeping the highest score; or, with `gt_boxes`, the
annotated boxes of annotated frames), embed the crops, take each crop's k nearest gallery rows, and
decide with the rules of `voting.py` / `assign.py` (`decide`):

    vote per video (optionally category-consistent) -> one-to-one assignment across videos
    -> two-piece combination search -> abstain beyond a distance

A video whose `.mp4` is missing or unreadable is skipped and counted, never fatal. `result.json`
follows SPEC §2, with `ranked_items` added for the top-k metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from imagesearch.data.crops import cut_crop
from imagesearch.data.records import Split, Video
from imagesearch.data.video import VideoError, probe_video, read_frames
from imagesearch.features.extract import CropFeatures
from imagesearch.matching.assign import abstain, assign_one_to_one, decisions_to_results
from imagesearch.matching.gallery import Detects, Gallery
from imagesearch.matching.index import build_index
from imagesearch.matching.voting import (
    WEIGHTINGS,
    FrameCandidates,
    Neighbour,
    VideoDecision,
    dedupe_boxes,
    two_piece_search,
    vote,
)

log = logging.getLogger(__name__)

__all__ = ["DetectionConfig", "MatcherConfig", "Matcher", "VideoTrace", "decide", "sample_frames"]

FrameHook = Callable[[Video, list[int], list[np.ndarray]], None]


@dataclass
class MatcherConfig:
    """The `matcher` section of an evaluation config.

    Attributes:
        num_frames: frames sampled per video (the original: 10).
        skip_frames: frames before this index are never sampled (products often appear late).
        frame_align: > 0: sample only frames that are multiples of it (the competition annotates every
            40th frame and scores the nearest one within ±20, so 40 lets a frame box be compared with
            the frame it names); 0: any frame.
        gt_boxes: use the annotated boxes of annotated frames instead of the detector, and sample
            among the annotated frames.
        gt_distractors: with gt_boxes, also query the distractor garments (instance 0), as a
            detector would see them.
        k: gallery neighbours per crop.
        top_n: distinct items each crop votes for.
        weighting: vote weight, a key of `voting.WEIGHTINGS` ("count", "rank", "inverse_distance").
        category_filter: keep only neighbours of the crop's (merged) category; needs a classifier.
        two_piece: search two-piece combinations for set items.
        one_to_one: each item goes to at most one video (Hungarian assignment on the votes).
        max_distance: abstain when the chosen evidence's squared distance exceeds this; None never.
        margin: crop growth on each side, as a fraction of the box size.
        max_side: crops larger than this are shrunk first.
    """

    num_frames: int = 10
    skip_frames: int = 0
    frame_align: int = 0
    gt_boxes: bool = False
    gt_distractors: bool = True
    k: int = 20
    top_n: int = 1
    weighting: str = "count"
    category_filter: bool = False
    two_piece: bool = True
    one_to_one: bool = False
    max_distance: float | None = None
    margin: float = 0.1
    max_side: int = 256


@dataclass
class DetectionConfig:
    """How detections become query boxes (the `detector` section, beside its checkpoint).

    Attributes:
        min_score: the lowest detection score kept.
        max_per_frame: at most this many boxes per frame, best first, after de-duplication.
        dedupe_iou: NMS IoU: a box overlapping a higher-scoring kept box more than this is a duplicate
            or an occluded garment and is dropped (SPEC §3 stage 7).
        batch_size: frames per detector forward pass.
    """

    min_score: float = 0.3
    max_per_frame: int = 8
    dedupe_iou: float = 0.5
    batch_size: int = 10


@dataclass
class VideoTrace:
    """What the matcher did with one video (for decisions, metrics and the report).

    Attributes:
        video_id: the video.
        status: "ok", "missing" (no .mp4), "unreadable", "no frames" or "no garments".
        frame_indices: the sampled frames.
        queries: the kept garments with their neighbours (category = merged classifier group or None).
        query_rows: (Q, k) gallery row indices of each query's neighbours, nearest first (-1 = none).
        annotated: (true item id, (k,) gallery rows) per annotated product crop (instance > 0) of the
            sampled annotated frames: the per-crop recall@k queries.
        detections: (prediction, ground truth) per sampled annotated frame, detector mode only.
        error: the reason of a skip.
        decision: the final decision (set by `Matcher.run`).
    """

    video_id: str
    status: str = "ok"
    frame_indices: list[int] = field(default_factory=list)
    queries: list[FrameCandidates] = field(default_factory=list)
    query_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    annotated: list[tuple[str, np.ndarray]] = field(default_factory=list)
    detections: list[tuple[dict, dict]] = field(default_factory=list)
    error: str = ""
    decision: VideoDecision | None = None


def sample_frames(
    n_frames: int, count: int, skip: int = 0, align: int = 0, candidates: Sequence[int] | None = None
) -> list[int]:
    """`count` frame indices evenly spaced among the candidates, first and last included.

    Args:
        n_frames: frames in the clip.
        count: how many to take (all candidates when there are fewer).
        skip: candidates below this index are dropped.
        align: > 0: candidates are the multiples of `align` (ignored when `candidates` is given).
        candidates: explicit candidates (e.g. the annotated frames); default every (aligned) frame.

    Returns:
        Sorted, distinct indices in [skip, n_frames).

    >>> sample_frames(400, 10), sample_frames(400, 10, skip=80, align=40)
    ([0, 44, 89, 133, 177, 222, 266, 310, 355, 399], [80, 120, 160, 200, 240, 280, 320, 360])
    """
    if candidates is None:
        step = align if align > 0 else 1
        pool = list(range(-(-skip // step) * step, n_frames, step))
    else:
        pool = sorted({int(c) for c in candidates if skip <= c < n_frames})
    if len(pool) <= count or count <= 0:
        return pool if count > 0 else []
    # Spacing (len - 1) / (count - 1) > 1, so the rounded positions are distinct.
    return [pool[p] for p in np.linspace(0, len(pool) - 1, count).round().astype(int)]


def decide(
    videos: Mapping[str, Sequence[FrameCandidates]], cfg: MatcherConfig, item_instances: Mapping[str, set[int]]
) -> dict[str, VideoDecision]:
    """Per-video decisions from each video's queries and neighbours (pure: no models, no files).

    Order: `vote` per video (category-consistent when `cfg.category_filter`), `assign_one_to_one`
    across videos when `cfg.one_to_one`, `two_piece_search` on the unfiltered queries when
    `cfg.two_piece`, then `abstain` when `cfg.max_distance` is set.

    Args:
        videos: video id -> its kept queries with neighbours.
        cfg: the decision options.
        item_instances: item id -> its instance ids (two-piece sets have two).

    Returns:
        video id -> decision (abstaining where no query had a neighbour or the evidence was too far).
    """
    if cfg.weighting not in WEIGHTINGS:
        raise ValueError(f"matcher.weighting: unknown {cfg.weighting!r}; choose one of {sorted(WEIGHTINGS)}")
    out = {
        v: vote(frames, top_n=cfg.top_n, weighting=cfg.weighting, category_filter=cfg.category_filter)
        for v, frames in videos.items()
    }
    if cfg.one_to_one:
        out = assign_one_to_one(out)
    for v, decision in out.items():
        if cfg.two_piece:
            decision = two_piece_search(decision, videos[v], item_instances)
        if cfg.max_distance is not None:
            decision = abstain(decision, cfg.max_distance)
        out[v] = decision
    return out


class Matcher:
    """Queries videos against a gallery.

    Args:
        gallery: the gallery rows and feature parts.
        extractor: the same feature extractor that built the gallery.
        cfg: matcher options.
        det_cfg: detection post-processing (used with a detector).
        detector: `detect(frames)`; required unless `cfg.gt_boxes`.
        classify: crops -> category names (for the category filter); None: no categories.
        merge_map: category -> merged group, applied to query and gallery categories.
        index: "brute", "faiss_flat" or "faiss_ivf", and its keyword arguments.
    """

    def __init__(
        self,
        gallery: Gallery,
        extractor: CropFeatures,
        cfg: MatcherConfig,
        det_cfg: DetectionConfig | None = None,
        detector: Detects | None = None,
        classify: Callable[[Sequence[np.ndarray]], list[str]] | None = None,
        merge_map: Mapping[str, str] | None = None,
        index: str = "brute",
        index_kwargs: Mapping[str, object] | None = None,
    ) -> None:
        if not cfg.gt_boxes and detector is None:
            raise ValueError("matcher: without matcher.gt_boxes a detector checkpoint is needed (detector.checkpoint)")
        if cfg.category_filter and classify is None:
            log.warning("matcher.category_filter is on but no classifier is given: the filter keeps every neighbour")
        self.gallery, self.extractor, self.cfg = gallery, extractor, cfg
        self.det_cfg = det_cfg or DetectionConfig()
        self.detector, self.classify = detector, classify
        self.merge_map = dict(merge_map or {})
        self.index = build_index(index, **dict(index_kwargs or {}))
        self.index.add(gallery.features(extractor.fuse))
        self.gallery_groups = [self.group(r.label) for r in gallery.records]

    def group(self, label: str | None) -> str | None:
        """A category's merged group (itself when unmerged); None stays None."""
        return None if label is None else self.merge_map.get(label, label)

    def _search(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not crops:
            return np.zeros((0, self.cfg.k), np.float32), np.zeros((0, self.cfg.k), np.int64)
        return self.index.search(self.extractor(crops), self.cfg.k)

    def _neighbours(self, dist: np.ndarray, rows: np.ndarray) -> list[Neighbour]:
        out = []
        for d, r in zip(dist, rows, strict=True):
            if r < 0:
                continue
            rec = self.gallery.records[r]
            out.append(Neighbour(rec.item_id, rec.img_name, rec.box, float(d), self.gallery_groups[r], rec.instance_id))
        return out

    def _gt_boxes(self, video: Video, indices: list[int]) -> list[tuple[int, tuple, float, int]]:
        annotated = {f.frame_index: f for f in video.frames}
        return [
            (i, tuple(b.xyxy), 1.0, b.instance_id)
            for i in indices
            for b in annotated[i].boxes
            if self.cfg.gt_distractors or b.instance_id > 0
        ]

    def _detected_boxes(
        self, video: Video, indices: list[int], frames: list[np.ndarray], trace: VideoTrace
    ) -> list[tuple[int, tuple, float, int]]:
        assert self.detector is not None
        annotated = {f.frame_index: f for f in video.frames}
        out: list[tuple[int, tuple, float, int]] = []
        step = max(1, self.det_cfg.batch_size)
        for start in range(0, len(frames), step):
            detections = self.detector.detect(frames[start : start + step])
            for i, det in zip(indices[start : start + step], detections, strict=True):
                if i in annotated:  # detector AP@0.5 on the sampled annotated frames, class-agnostic
                    gt = np.asarray([b.xyxy for b in annotated[i].boxes], np.float64).reshape(-1, 4)
                    ones = np.ones(len(det["scores"]), np.int64)
                    trace.detections.append(
                        ({"boxes": det["boxes"], "scores": det["scores"], "labels": ones},
                         {"boxes": gt, "labels": np.ones(len(gt), np.int64)})
                    )  # fmt: skip
                ok = det["scores"] >= self.det_cfg.min_score
                boxes, scores = det["boxes"][ok], det["scores"][ok]
                kept = dedupe_boxes(boxes, scores, self.det_cfg.dedupe_iou) if len(boxes) else []
                out += [
                    (i, tuple(map(float, boxes[j])), float(scores[j]), -1) for j in kept[: self.det_cfg.max_per_frame]
                ]
        return out

    def _annotated_recall(
        self, video: Video, split: Split, frames: dict[int, np.ndarray], trace: VideoTrace, inst: list[int]
    ) -> None:
        known = split.instance_to_item
        if self.cfg.gt_boxes:  # the queries are the annotated boxes: reuse their neighbours
            trace.annotated = [(known[n], r) for n, r in zip(inst, trace.query_rows, strict=True) if n in known]
            return
        crops, items = [], []
        for f in video.frames:
            for b in f.boxes if f.frame_index in frames else []:
                if b.instance_id in known:
                    crops.append(cut_crop(frames[f.frame_index], b.xyxy, self.cfg.margin, self.cfg.max_side))
                    items.append(known[b.instance_id])
        _, rows = self._search(crops)
        trace.annotated = list(zip(items, rows, strict=True))

    def query_video(self, video: Video, split: Split, on_frames: FrameHook | None = None) -> VideoTrace:
        """Sample, decode, find garments, embed and search one video (no decision yet).

        Args:
            video: the video record (a missing `.mp4` gives status "missing").
            split: its split (instance -> item map, for the recall queries).
            on_frames: called with (video, indices, RGB frames) once decoded (e.g. report thumbnails).

        Returns:
            The `VideoTrace`.
        """
        trace, cfg = VideoTrace(video.video_id), self.cfg
        if not video.present or not video.path.is_file():
            trace.status, trace.error = "missing", f"{video.path}: video file not found"
            return trace
        try:
            n = video.num_frames or probe_video(video.path).frames
            cands = [f.frame_index for f in video.frames if f.boxes] if cfg.gt_boxes else None
            trace.frame_indices = sample_frames(n, cfg.num_frames, cfg.skip_frames, cfg.frame_align, cands)
            frames = read_frames(video.path, trace.frame_indices)
        except VideoError as exc:
            trace.status, trace.error = "unreadable", str(exc)
            return trace
        if not frames:
            trace.status = "no frames"
            return trace
        if on_frames is not None:
            on_frames(video, trace.frame_indices, frames)
        by_index = dict(zip(trace.frame_indices, frames, strict=True))
        if cfg.gt_boxes:
            boxes = self._gt_boxes(video, trace.frame_indices)
        else:
            boxes = self._detected_boxes(video, trace.frame_indices, frames, trace)
        crops = [cut_crop(by_index[i], b, cfg.margin, cfg.max_side) for i, b, _, _ in boxes]
        labels = self.classify(crops) if self.classify is not None and crops else [None] * len(crops)
        dist, trace.query_rows = self._search(crops)
        trace.queries = [
            FrameCandidates(i, b, s, self.group(lab), self._neighbours(d, r))
            for (i, b, s, _), lab, d, r in zip(boxes, labels, dist, trace.query_rows, strict=True)
        ]
        self._annotated_recall(video, split, by_index, trace, [n for _, _, _, n in boxes])
        if not trace.queries:
            trace.status = "no garments"
        return trace

    def run(self, split: Split, video_ids: Sequence[str] | None = None, on_frames: FrameHook | None = None, progress: bool = True) -> list[VideoTrace]:  # fmt: skip
        """Query every video (or `video_ids`) and decide.

        Returns:
            One trace per video, in split order, each with its `decision` (None for a skipped video).
        """
        ids = list(split.videos) if video_ids is None else list(video_ids)
        traces = [
            self.query_video(split.videos[v], split, on_frames)
            for v in tqdm(ids, desc="videos", unit="video", disable=not progress)
        ]
        skipped = [t for t in traces if t.status in ("missing", "unreadable")]
        if skipped:
            log.info("matcher: %d of %d videos skipped (missing or unreadable)", len(skipped), len(traces))
        item_instances = {item_id: item.instance_ids for item_id, item in split.items.items()}
        queried = {t.video_id: t.queries for t in traces if t.status in ("ok", "no garments")}
        decisions = decide(queried, self.cfg, item_instances)
        for t in traces:
            t.decision = decisions.get(t.video_id)
        return traces


def results_of(traces: Sequence[VideoTrace]) -> dict[str, dict]:
    """`result.json` content (SPEC §2) from decided traces; abstaining and skipped videos are left out."""
    return decisions_to_results({t.video_id: t.decision for t in traces if t.decision is not None})
