"""The per-video query pipeline (SPEC §3 stage 7): frames -> garments -> gallery neighbours -> decisions.

Per video: sample frames evenly (`sample_frames`), decode them (`data.video.read_frames`), find the
garments (the detector, de-duplicated by NMS keeping the highest score; or, with `gt_boxes`, the
annotated boxes of annotated frames), embed the crops, take each crop's k nearest gallery rows, and
decide with the rules of `voting.py` / `assign.py` (`decisions.decide`, with the options and traces):

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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from imagesearch.data.prefetch import DecodedVideo, FramePlan, iter_decoded, sample_frames
from imagesearch.data.records import Split, Video
from imagesearch.features.extract import CropFeatures
from imagesearch.matching.decisions import MatcherConfig, VideoTrace, decide, results_of
from imagesearch.matching.gallery import Detects, Gallery, LabelsBoxes
from imagesearch.matching.index import build_index
from imagesearch.matching.voting import FrameCandidates, Neighbour
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

# The options, traces and decision rules live in decisions.py; re-exported here, where callers meet them.
__all__ = [
    "FramePlan",
    "LabelsBoxes",
    "MatcherConfig",
    "Matcher",
    "VideoTrace",
    "decide",
    "results_of",
    "sample_frames",
]


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
        detector: `detect(frames)` giving the post-processed query boxes (`Detects`, e.g.
            `detector.Detector`); required unless `cfg.gt_boxes`.
        classify: boxes of frames -> category names, for the category filter (`LabelsBoxes`, e.g.
            `evaluation.models.CropClassifier`, which cuts the crops itself); None: no categories.
        merge_map: category -> merged group, applied to query and gallery categories.
        index: "brute", "faiss_flat" or "faiss_ivf", and its keyword arguments.
        det_batch: frames per detector pass (frames of consecutive videos share a batch).

    Crops are cut with the extractor's geometry (`extractor.margin`, `.max_side`), as the gallery's are.

    Attributes:
        timings: seconds per stage of the last `run` ("decode" = waiting for decoded frames).
        max_frames_held: the most decoded frames held at once in the last `run` (memory stays flat).
    """

    def __init__(
        self,
        gallery: Gallery,
        extractor: CropFeatures,
        cfg: MatcherConfig,
        detector: Detects | None = None,
        classify: LabelsBoxes | None = None,
        merge_map: Mapping[str, str] | None = None,
        index: str = "brute",
        index_kwargs: Mapping[str, object] | None = None,
        det_batch: int = 10,
    ) -> None:
        if not cfg.gt_boxes and detector is None:
            raise ValueError("matcher: without matcher.gt_boxes a detector checkpoint is needed (detector.checkpoint)")
        if cfg.category_filter and classify is None:
            log.warning("matcher.category_filter is on but no classifier is given: the filter keeps every neighbour")
        self.gallery, self.extractor, self.cfg = gallery, extractor, cfg
        self.det_batch = max(1, det_batch)
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
            out.append(Neighbour(rec.item_id, rec.img_name, rec.box, float(d), self.gallery_groups[r], rec.instance_id, rec.score))
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
            if frame is not None:  # AP@0.5 of the boxes the matcher uses, on the sampled annotated frames
                gt = np.asarray([b.xyxy for b in frame.boxes], np.float64).reshape(-1, 4)
                ones = np.ones(len(det["scores"]), np.int64)
                w.trace.detections.append(
                    ({"boxes": det["boxes"], "scores": det["scores"], "labels": ones},
                     {"boxes": gt, "labels": np.ones(len(gt), np.int64)})
                )  # fmt: skip
            w.boxes += [(i, tuple(map(float, b)), float(s), -1) for b, s in zip(det["boxes"], det["scores"], strict=True)]  # fmt: skip
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
        queries: list[int] = []  # positions in `boxes` of the queries (the rest are the recall boxes)
        works = [w for w in works if w.trace.status == "ok"]
        for w in works:
            where = {i: len(images) + j for j, i in enumerate(w.trace.frame_indices)}
            recall.append([] if self.cfg.gt_boxes else self._recall_boxes(w, split))
            queries += range(len(boxes), len(boxes) + len(w.boxes))
            for i, b, *_ in [*w.boxes, *recall[-1]]:
                owners.append(where[i])
                boxes.append(b)
            images += w.frames
        owner_arr, box_arr = np.asarray(owners, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4)
        dist, rows = self._search(images, owner_arr, box_arr)
        labels: list[str | None] = [None] * len(boxes)
        if self.classify is not None and queries:  # only the queries need a category
            sel, margin, max_side = np.asarray(queries), self.extractor.margin, self.extractor.max_side
            got = self.classify.box_labels(images, owner_arr[sel], box_arr[sel], margin, max_side)
            for p, label in zip(queries, got, strict=True):
                labels[p] = label
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
            ex = self.extractor
            parts = ex.box_parts(images, owners, boxes, ex.margin, ex.max_side, ex.needed_parts)
            query = self.extractor.fuse(parts)
        with self._timed("search"):
            return self.index.search(query, k)

    def query_video(self, video: Video, split: Split) -> VideoTrace:
        """Sample, decode, find garments, embed and search one video (no decision yet).

        Args:
            video: the video record (a missing `.mp4` gives status "missing").
            split: its split (instance -> item map, for the recall queries).

        Returns:
            The `VideoTrace`.
        """
        return next(self.stream([video], split))

    def stream(self, videos: Sequence[Video], split: Split, progress: bool = False) -> Iterator[VideoTrace]:
        """Query videos in a stream (see the module docstring); yields each trace, undecided, in order.

        Resets `timings` and `max_frames_held`.
        """
        self.timings, self.max_frames_held = dict.fromkeys(STAGES, 0.0), 0
        batch, gt = self.det_batch, self.cfg.gt_boxes
        inflight: list[_Work] = []  # decoded, in order, not yet searched
        queue: list[tuple[_Work, int]] = []  # frames waiting for the detector
        decoded = iter_decoded(videos, self.plan, self.cfg.decode_workers, self.cfg.prefetch)
        bar = progress_bar(total=len(videos), enabled=progress, desc="videos", unit="video")
        while True:
            with self._timed("decode"):
                item: DecodedVideo | None = next(decoded, None)
            last = item is None
            if item is not None:
                work = self._start(item, videos[item.position])
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

    def _start(self, item: DecodedVideo, video: Video) -> _Work:
        trace = VideoTrace(
            item.video_id, item.status, list(item.indices), error=item.error, frames_lost=item.frames_lost
        )
        work = _Work(trace, video, item.frame_list())
        if trace.status == "ok":
            work.undetected = 0 if self.cfg.gt_boxes else len(work.frames)
        return work

    def run(self, split: Split, video_ids: Sequence[str] | None = None, progress: bool = True) -> list[VideoTrace]:
        """Query every video (or `video_ids`) and decide.

        Returns:
            One trace per video, in split order, each with its `decision` (None for a skipped video).
        """
        ids = list(split.videos) if video_ids is None else list(video_ids)
        traces = list(self.stream([split.videos[v] for v in ids], split, progress))
        skipped = [t for t in traces if t.status in ("missing", "unreadable")]
        if skipped:
            log.info("matcher: %d of %d videos skipped (missing or unreadable)", len(skipped), len(traces))
        # The pieces of two-piece sets as the gallery knows them (annotated rows carry instance ids; detector
        # rows carry 0): predictions never read the split's annotations.
        item_instances: dict[str, set[int]] = {}
        for rec in self.gallery.records:
            if rec.instance_id > 0:
                item_instances.setdefault(rec.item_id, set()).add(rec.instance_id)
        queried = {t.video_id: t.queries for t in traces if t.status in ("ok", "no garments")}
        decisions = decide(queried, self.cfg, item_instances)
        for t in traces:
            t.decision = decisions.get(t.video_id)
        return traces
