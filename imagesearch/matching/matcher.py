"""The per-video query pipeline (SPEC §3 stage 7): frames -> garments -> gallery neighbours -> decisions.

Per video: sample frames evenly (`sample_frames`), decode them (`data.video.read_frames`), find the
garments (the detector, de-duplicated by NMS keeping the highest score; or, with `gt_boxes`, the
annotated boxes of annotated frames), embed the crops, take each crop's k nearest gallery rows, and
decide with the rules of `voting.py` / `assign.py` (`decide`):

    vote per video (optionally category-consistent) -> one-to-one assignment across videos
    -> two-piece combination search -> abstain beyond a distance

A video whose `.mp4` is missing or unreadable is skipped and counted, never fatal. `result.json`
follows SPEC §2, with `ranked_items` added for the top-k metrics.

`Matcher.run` streams: frames are decoded ahead in worker processes (`data.prefetch`,
`matcher.decode_workers`), frames of consecutive videos share detector batches of
`detector.batch_size` frames, and the boxes of a group of finished videos are cut on the device and
embedded in batched calls (`CropFeatures.box_parts`) and searched in one index call. A video's
frames are dropped once its queries are searched, so memory holds about one detector batch of frames
plus the prefetched videos, whatever the split's size; traces keep boxes, neighbours and row indices.
`Matcher.timings` splits the wall time into decode (waiting for frames), detect, embed and search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from imagesearch.data.crops import cut_crop
from imagesearch.data.prefetch import DecodedVideo, FramePlan, iter_decoded, sample_frames
from imagesearch.data.records import Split, Video
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

__all__ = ["DetectionConfig", "FramePlan", "MatcherConfig", "Matcher", "VideoTrace", "decide", "sample_frames"]

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
        score_power: each detection's votes are also weighed by its detector score to this power; 0
            (the original) counts a barely kept box like a sure one. A weak detector that needs a low
            `detector.min_score` to keep its true garments also keeps many false ones: a power > 0
            lets the sure boxes decide (annotated boxes score 1, so `gt_boxes` runs are unchanged).
        category_filter: keep only neighbours of the crop's (merged) category; needs a classifier.
        two_piece: search two-piece combinations for set items.
        one_to_one: each item goes to at most one video (Hungarian assignment on the votes).
        max_distance: abstain when the chosen evidence's squared distance exceeds this; None never.
        margin: crop growth on each side, as a fraction of the box size.
        max_side: crops larger than this are shrunk first.
        decode_workers: processes decoding frames ahead of the models; 0 decodes in the main process.
        prefetch: videos decoded ahead per decode worker.
    """

    num_frames: int = 10
    skip_frames: int = 0
    frame_align: int = 0
    gt_boxes: bool = False
    gt_distractors: bool = True
    k: int = 20
    top_n: int = 1
    weighting: str = "count"
    score_power: float = 0.0
    category_filter: bool = False
    two_piece: bool = True
    one_to_one: bool = False
    max_distance: float | None = None
    margin: float = 0.1
    max_side: int = 256
    decode_workers: int = 0
    prefetch: int = 2


@dataclass
class DetectionConfig:
    """How detections become query boxes (the `detector` section, beside its checkpoint).

    Attributes:
        min_score: the lowest detection score kept.
        max_per_frame: at most this many boxes per frame, best first, after de-duplication.
        dedupe_iou: NMS IoU: a box overlapping a higher-scoring kept box more than this is a duplicate
            or an occluded garment and is dropped (SPEC §3 stage 7).
        batch_size: frames per detector forward pass (frames of consecutive videos share a batch).
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
    if not cfg.score_power >= 0:
        raise ValueError(f"matcher.score_power: must be >= 0 (0 = the plain vote), got {cfg.score_power}")
    out = {
        v: vote(
            frames,
            top_n=cfg.top_n,
            weighting=cfg.weighting,
            category_filter=cfg.category_filter,
            score_power=cfg.score_power,
        )
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


@dataclass
class _Work:
    """A decoded video in flight: its frames, kept until its queries have been searched."""

    trace: VideoTrace
    video: Video
    frames: list[np.ndarray]
    boxes: list[tuple[int, tuple, float, int]] = field(default_factory=list)  # (frame index, box, score, instance)
    undetected: int = 0  # frames still waiting for the detector


STAGES = ("decode", "detect", "embed", "search")


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

    Attributes:
        timings: seconds per stage of the last `run` ("decode" = waiting for decoded frames).
        max_frames_held: the most decoded frames held at once in the last `run` (memory stays flat).
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
        self.plan = FramePlan(cfg.num_frames, cfg.skip_frames, cfg.frame_align, cfg.gt_boxes)
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.max_frames_held = 0

    def group(self, label: str | None) -> str | None:
        """A category's merged group (itself when unmerged); None stays None."""
        return None if label is None else self.merge_map.get(label, label)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] += time.perf_counter() - start

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

    def _detect(self, batch: list[tuple[_Work, int]]) -> None:
        """One detector pass over frames of possibly several videos; boxes go to each video's work."""
        assert self.detector is not None
        with self._timed("detect"):
            detections = self.detector.detect([w.frames[j] for w, j in batch])
        for (w, j), det in zip(batch, detections, strict=True):
            i = w.trace.frame_indices[j]
            frame = next((f for f in w.video.frames if f.frame_index == i), None)
            if frame is not None:  # detector AP@0.5 on the sampled annotated frames, class-agnostic
                gt = np.asarray([b.xyxy for b in frame.boxes], np.float64).reshape(-1, 4)
                ones = np.ones(len(det["scores"]), np.int64)
                w.trace.detections.append(
                    ({"boxes": det["boxes"], "scores": det["scores"], "labels": ones},
                     {"boxes": gt, "labels": np.ones(len(gt), np.int64)})
                )  # fmt: skip
            ok = det["scores"] >= self.det_cfg.min_score
            boxes, scores = det["boxes"][ok], det["scores"][ok]
            kept = dedupe_boxes(boxes, scores, self.det_cfg.dedupe_iou) if len(boxes) else []
            w.boxes += [
                (i, tuple(map(float, boxes[k])), float(scores[k]), -1) for k in kept[: self.det_cfg.max_per_frame]
            ]
            w.undetected -= 1

    def _recall_boxes(self, work: _Work, split: Split) -> list[tuple[int, tuple, str]]:
        """(frame index, box, true item) of the annotated product boxes of the sampled annotated frames."""
        known, sampled = split.instance_to_item, set(work.trace.frame_indices)
        return [
            (f.frame_index, tuple(b.xyxy), known[b.instance_id])
            for f in work.video.frames
            if f.frame_index in sampled
            for b in f.boxes
            if b.instance_id in known
        ]

    def _finish(self, works: list[_Work], split: Split) -> None:
        """Crop, embed and search the boxes of finished videos in batched calls; then drop their frames."""
        images: list[np.ndarray] = []
        owners: list[int] = []
        boxes: list[tuple] = []
        recall: list[list[tuple[int, tuple, str]]] = []
        works = [w for w in works if w.trace.status == "ok"]
        for w in works:
            where = {i: len(images) + j for j, i in enumerate(w.trace.frame_indices)}
            recall.append([] if self.cfg.gt_boxes else self._recall_boxes(w, split))
            for i, b, *_ in [*w.boxes, *recall[-1]]:
                owners.append(where[i])
                boxes.append(b)
            images += w.frames
        dist, rows = self._search(images, np.asarray(owners, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4))
        labels: list[str | None] = [None] * len(boxes)
        if self.classify is not None and boxes:
            crops = [cut_crop(images[o], b, self.cfg.margin, self.cfg.max_side) for o, b in zip(owners, boxes, strict=True)]  # fmt: skip
            labels = list(self.classify(crops))
        start = 0
        for w, rec in zip(works, recall, strict=True):
            q, t = len(w.boxes), w.trace
            sl = slice(start, start + q)
            t.query_rows = rows[sl]
            t.queries = [
                FrameCandidates(i, b, s, self.group(lab), self._neighbours(d, r))
                for (i, b, s, _), lab, d, r in zip(w.boxes, labels[sl], dist[sl], rows[sl], strict=True)
            ]
            if self.cfg.gt_boxes:  # the queries are the annotated boxes: reuse their neighbours
                known = split.instance_to_item
                t.annotated = [(known[n], r) for (_, _, _, n), r in zip(w.boxes, t.query_rows, strict=True) if n in known]  # fmt: skip
            else:
                t.annotated = [(item, r) for (_, _, item), r in zip(rec, rows[start + q : start + q + len(rec)], strict=True)]  # fmt: skip
            start += q + len(rec)
            t.status = "ok" if t.queries else "no garments"
            w.frames = []

    def _search(self, images: list[np.ndarray], owners: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.cfg.k
        if not len(boxes):
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        with self._timed("embed"):
            parts = self.extractor.box_parts(images, owners, boxes, self.cfg.margin, self.cfg.max_side, self.extractor.needed_parts)  # fmt: skip
            query = self.extractor.fuse(parts)
        with self._timed("search"):
            return self.index.search(query, k)

    def query_video(self, video: Video, split: Split, on_frames: FrameHook | None = None) -> VideoTrace:
        """Sample, decode, find garments, embed and search one video (no decision yet).

        Args:
            video: the video record (a missing `.mp4` gives status "missing").
            split: its split (instance -> item map, for the recall queries).
            on_frames: called with (video, indices, RGB frames) once decoded (e.g. report thumbnails).

        Returns:
            The `VideoTrace`.
        """
        return next(self.stream([video], split, on_frames))

    def stream(
        self, videos: Sequence[Video], split: Split, on_frames: FrameHook | None = None, progress: bool = False
    ) -> Iterator[VideoTrace]:
        """Query videos in a stream (see the module docstring); yields each trace, undecided, in order.

        Resets `timings` and `max_frames_held`.
        """
        self.timings, self.max_frames_held = dict.fromkeys(STAGES, 0.0), 0
        batch, gt = max(1, self.det_cfg.batch_size), self.cfg.gt_boxes
        inflight: list[_Work] = []  # decoded, in order, not yet searched
        queue: list[tuple[_Work, int]] = []  # frames waiting for the detector
        decoded = iter_decoded(videos, self.plan, self.cfg.decode_workers, self.cfg.prefetch)
        bar = tqdm(total=len(videos), desc="videos", unit="video", disable=not progress)
        while True:
            with self._timed("decode"):
                item: DecodedVideo | None = next(decoded, None)
            last = item is None
            if item is not None:
                work = self._start(item, videos[item.position], on_frames)
                inflight.append(work)  # skipped videos too, so that traces come out in order
                if work.trace.status == "ok" and gt:
                    work.boxes = self._gt_boxes(work.video, work.trace.frame_indices)
                elif work.trace.status == "ok":
                    queue += [(work, j) for j in range(len(work.frames))]
                self.max_frames_held = max(self.max_frames_held, sum(len(w.frames) for w in inflight))
            while queue and (len(queue) >= batch or last):
                self._detect(queue[:batch])
                queue = queue[batch:]
            done = 0
            while done < len(inflight) and inflight[done].undetected == 0:
                done += 1
            if done and (last or sum(len(w.frames) for w in inflight[:done]) >= batch):
                finished, inflight = inflight[:done], inflight[done:]
                self._finish(finished, split)
                for w in finished:
                    bar.update()
                    yield w.trace
            if last:
                break
        bar.close()

    def _start(self, item: DecodedVideo, video: Video, on_frames: FrameHook | None) -> _Work:
        trace = VideoTrace(item.video_id, item.status, list(item.indices), error=item.error)
        work = _Work(trace, video, item.frame_list())
        if trace.status == "ok":
            work.undetected = 0 if self.cfg.gt_boxes else len(work.frames)
            if on_frames is not None:
                on_frames(video, trace.frame_indices, work.frames)
        return work

    def run(self, split: Split, video_ids: Sequence[str] | None = None, on_frames: FrameHook | None = None, progress: bool = True) -> list[VideoTrace]:  # fmt: skip
        """Query every video (or `video_ids`) and decide.

        Returns:
            One trace per video, in split order, each with its `decision` (None for a skipped video).
        """
        ids = list(split.videos) if video_ids is None else list(video_ids)
        traces = list(self.stream([split.videos[v] for v in ids], split, on_frames, progress))
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
