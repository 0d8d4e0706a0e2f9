"""The streaming matcher: ordered parallel decoding, detector batches across videos, flat memory, same answers."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from imagesearch.checkpoint import save_checkpoint
from imagesearch.classifier.model import ClassifierModelConfig, build_classifier
from imagesearch.data.crops import cut_crop
from imagesearch.data.prefetch import iter_decoded
from imagesearch.data.reader import load_split
from imagesearch.data.video import read_frames
from imagesearch.evaluation.fusion import annotated_query_parts
from imagesearch.evaluation.models import CropClassifier, build_extractor
from imagesearch.features.extract import FeatureConfig, LBPConfig
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from imagesearch.matching.matcher import FramePlan, Matcher, MatcherConfig
from tests.unit.tiny_retrieval import fake_extractor, make_tiny_split


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    root = make_tiny_split(tmp_path_factory.mktemp("stream") / "split", items=4, seed=11)
    (root / "video" / "011002.mp4").write_bytes(b"not a video")  # unreadable, between two good ones
    loaded = load_split(root)
    broken = replace(loaded.videos["011002"], present=True, num_frames=81)  # the reader saw no frames in it
    gone = replace(loaded.videos["011003"], present=False)  # missing, last
    return replace(loaded, videos={**loaded.videos, "011002": broken, "011003": gone})


class _AnnotatedDetector:
    """Returns each frame's annotated boxes (found by the frame's mean colour) and records batch sizes."""

    def __init__(self, split, plan: FramePlan) -> None:
        self.by_key: dict[bytes, np.ndarray] = {}
        for v in split.videos.values():
            if v.video_id in ("011002", "011003"):
                continue
            idx = plan(v, v.num_frames)
            ann = {f.frame_index: f for f in v.frames}
            for i, frame in zip(idx, read_frames(v.path, idx), strict=True):
                boxes = [b.xyxy for b in ann[i].boxes] if i in ann else []
                self.by_key[frame.tobytes()] = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.batches: list[int] = []

    def detect(self, frames, keep_best=False):
        self.batches.append(len(frames))
        out = []
        for f in frames:
            boxes = self.by_key[f.tobytes()]
            scores = np.linspace(0.9, 0.5, len(boxes)).astype(np.float32)
            out.append({"boxes": boxes, "scores": scores, "labels": np.ones(len(boxes), np.int64)})
        return out


def test_prefetch_keeps_order_and_reports_skips(split):
    plan = FramePlan(3, align=40)
    videos = list(split.videos.values())
    for workers in (0, 2):
        items = list(iter_decoded(videos, plan, workers=workers, prefetch=1))
        assert [(d.position, d.video_id, d.status) for d in items] == [
            (0, "011000", "ok"), (1, "011001", "ok"), (2, "011002", "unreadable"), (3, "011003", "missing")
        ]  # fmt: skip
        assert items[0].indices == [0, 40, 80] and items[3].frames is None and "not found" in items[3].error
        for got, want in zip(items[1].frame_list(), read_frames(videos[1].path, [0, 40, 80]), strict=True):
            np.testing.assert_array_equal(got, want)


def _run(split, extractor, gallery, det_batch: int, workers: int):
    cfg = MatcherConfig(num_frames=3, frame_align=40, decode_workers=workers, k=3)
    detector = _AnnotatedDetector(split, FramePlan(3, align=40))
    matcher = Matcher(gallery, extractor, cfg, detector, det_batch=det_batch)
    return matcher, detector, matcher.run(split, progress=False)


def test_detector_batches_span_videos_and_results_do_not_depend_on_batching(split, tmp_path):
    ex = fake_extractor()
    gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp_path)), use_cache=False, progress=False)
    one, det_one, traces_one = _run(split, ex, gallery, det_batch=1, workers=0)
    four, det_four, traces_four = _run(split, ex, gallery, det_batch=4, workers=2)
    assert det_one.batches == [1] * 6
    assert det_four.batches == [4, 2]  # 2 readable videos x 3 frames: the first batch holds frames of both
    assert [(t.video_id, t.status) for t in traces_four] == [
        ("011000", "ok"), ("011001", "ok"), ("011002", "unreadable"), ("011003", "missing")
    ]  # fmt: skip
    for a, b in zip(traces_one, traces_four, strict=True):
        assert (a.status, a.frame_indices, len(a.detections)) == (b.status, b.frame_indices, len(b.detections))
        np.testing.assert_array_equal(a.query_rows, b.query_rows)
        assert [(q.frame_index, q.box) for q in a.queries] == [(q.frame_index, q.box) for q in b.queries]
        assert [n for n, _ in a.annotated] == [n for n, _ in b.annotated]
    assert traces_four[0].decision is not None and traces_four[3].decision is None
    # Memory: at most a detector batch plus one more video's frames are held at any time.
    assert one.max_frames_held <= 1 + 3 and four.max_frames_held <= 4 + 3
    assert set(four.timings) == {"decode", "detect", "embed", "search"} and four.timings["detect"] > 0


def test_roi_align_and_cpu_paths_find_the_same_items(split, tmp_path):
    """Gallery and queries of each path are built alike; the top-1 item of each query agrees."""
    runs = {}
    for path in ("roi_align", "cpu"):
        torch.manual_seed(0)
        cfg = FeatureConfig(weights="none", width_mult=0.125, image_size=48, device="cpu", crops=path)
        ex = build_extractor(replace(cfg, lbp=LBPConfig(resize=48), lbp_weight=0.2))
        gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp_path)), use_cache=False, progress=False)
        runs[path] = _run(split, ex, gallery, det_batch=4, workers=0)[2]
    top = {p: [gallery_item(q) for t in tr for q in t.queries] for p, tr in runs.items()}
    assert len(top["cpu"]) > 0
    agree = np.mean([a == b for a, b in zip(top["roi_align"], top["cpu"], strict=True)])
    assert agree >= 0.8  # measured 10 of 11 queries


def gallery_item(q) -> str | None:
    return q.neighbours[0].item_id if q.neighbours else None


def test_query_video_is_one_trace(split, tmp_path: Path):
    ex = fake_extractor()
    gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp_path)), use_cache=False, progress=False)
    matcher = Matcher(gallery, ex, MatcherConfig(gt_boxes=True, k=2))
    video = split.videos["011000"]
    trace = matcher.query_video(video, split)
    with_boxes = [f.frame_index for f in video.frames if f.boxes]  # gt_boxes samples these only
    assert trace.status == "ok" and trace.frame_indices == with_boxes and with_boxes
    assert len(trace.queries) == sum(len(f.boxes) for f in video.frames)
    assert matcher.query_video(split.videos["011003"], split).status == "missing"


def test_fusion_query_crops_decode_ahead_alike_and_skip_unreadable(split, caplog):
    # The fusion tuning's queries: every product box of every annotated frame, the same whether the
    # frames are decoded here or in worker processes; the unreadable video is skipped with a warning.
    ex = fake_extractor()
    parts, items = annotated_query_parts(split, ex, progress=False, workers=0)
    parts2, items2 = annotated_query_parts(split, ex, progress=False, workers=2, prefetch=1)
    expected = [
        split.instance_to_item[b.instance_id]
        for v in ("011000", "011001")
        for f in sorted(split.videos[v].frames, key=lambda f: f.frame_index)
        for b in f.boxes
        if b.instance_id in split.instance_to_item
    ]
    assert items == items2 == expected and len(expected) > 0
    assert sorted(parts) == ["global", "lbp"] and len(parts["global"]) == len(expected)
    for key in parts:
        np.testing.assert_array_equal(parts[key], parts2[key])
    assert "011002" in caplog.text and "left out of the fusion tuning" in caplog.text


def _classifier_checkpoint(path: Path) -> Path:
    """A random-weight 23-way smoke classifier saved as `scripts/train_classifier.py` saves one."""
    torch.manual_seed(0)
    cfg = ClassifierModelConfig(weights="none", width_mult=0.125, inception_width_mult=0.0625, image_size=64)
    save_checkpoint(path, {"model": build_classifier(cfg).state_dict(), "config": {"model": asdict(cfg)}})
    return path


def test_classifier_cuts_boxes_by_either_path_alike(split, tmp_path):
    ckpt = _classifier_checkpoint(tmp_path / "classifier.pt")
    videos = [split.videos[v] for v in ("011000", "011001")]
    frames = [f for v in videos for f in v.frames if f.boxes]
    images = [im for v in videos for im in read_frames(v.path, [f.frame_index for f in v.frames if f.boxes])]
    owners = np.array([j for j, f in enumerate(frames) for _ in f.boxes])
    boxes = np.array([b.xyxy for f in frames for b in f.boxes], np.float64)
    cpu = CropClassifier(ckpt, device="cpu", crop_path="cpu")
    roi = CropClassifier(ckpt, device="cpu", crop_path="roi_align")
    crops = [cut_crop(images[o], b, 0.1, 256) for o, b in zip(owners, boxes, strict=True)]
    # The CPU path is cut_crop and the model's crop batching.
    np.testing.assert_array_equal(
        cpu.box_logits(images, owners, boxes, 0.1, 256), cpu.runner.run(crops, lambda y: y, "classify", False)
    )
    assert len(boxes) >= 3 and cpu.box_logits(images, owners, boxes, 0.1, 256).shape == (len(boxes), 23)
    # A random-weight network barely tells crops apart, so compare the paths through one that does: the
    # mean of each channel over a 3 x 3 grid of the normalised crop (the first 23 of those 27 values).
    cpu.runner.model, roi.runner.model = _GridMeans(), _GridMeans()
    a, b = cpu.box_logits(images, owners, boxes, 0.1, 256), roi.box_logits(images, owners, boxes, 0.1, 256)
    shifted = roi.box_logits(images, owners, boxes + 4.0, 0.1, 256)
    # Measured: the paths differ by 0.015 (normalised units, ~1 grey level); boxes moved by 4 px by 1.03.
    assert np.abs(a - b).max() < 0.1 < np.abs(a - shifted).max()
    assert roi.box_logits(images, owners[:0], boxes[:0], 0.1, 256).shape == (0, 23)
    with pytest.raises(ValueError, match="crop path"):
        CropClassifier(ckpt, device="cpu", crop_path="gpu")


class _GridMeans(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, (3, 3)).flatten(1)[:, :23]


class _BoxLabels:
    """A classifier that cuts its own crops: the matcher must hand it the frames and boxes."""

    def __init__(self) -> None:
        self.boxes = 0

    def box_labels(self, images, owners, boxes, margin, max_side):
        assert len(owners) == len(boxes) and owners.max() < len(images) and margin == 0.1
        self.boxes += len(boxes)
        return ["短裙"] * len(boxes)


def test_matcher_gives_a_crop_cutting_classifier_the_frames(split, tmp_path):
    ex = fake_extractor()
    gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp_path)), use_cache=False, progress=False)
    classify = _BoxLabels()
    cfg = MatcherConfig(gt_boxes=True, k=2, category_filter=True)
    trace = Matcher(gallery, ex, cfg, classify=classify).query_video(split.videos["011000"], split)
    assert classify.boxes == len(trace.queries) > 0
    assert {q.category for q in trace.queries} == {Matcher(gallery, ex, cfg, classify=classify).group("短裙")}
    # With a detector the recall boxes (annotated product boxes) are searched beside the queries but
    # need no category: the classifier sees the queries only.
    detector, classify = _AnnotatedDetector(split, FramePlan(3, align=40)), _BoxLabels()
    cfg = MatcherConfig(num_frames=3, frame_align=40, k=2, category_filter=True)
    matcher = Matcher(gallery, ex, cfg, detector, classify)
    trace = matcher.query_video(split.videos["011000"], split)
    assert trace.annotated and classify.boxes == len(trace.queries) > 0
