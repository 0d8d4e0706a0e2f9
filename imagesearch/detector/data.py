"""Detector training samples: annotated video frames and product images with every garment's box.

A real clip has ~10 annotated frames among ~400, and decoding is the slow part, so each video's
annotated frames are decoded once (`cache_frames`) into a folder per video under a cache root, like
`data/crops.py` does for crops; datasets then read JPEGs. A video's folder is named by a hash of the
file (path, size, mtime) and its frame indices, and its `frames.json` index is written last and
atomically, so an interrupted build resumes and a changed video is decoded again.

Every annotated garment is a detection target, distractors (instance_id 0) included: the detector
finds all garments, retrieval decides which one is the product.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from imagesearch.data.labels import CATEGORIES, CATEGORY_INDEX
from imagesearch.data.records import Split, Video
from imagesearch.detector.model import label_of
from imagesearch.io import atomic_write_text
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

FRAME_INDEX_NAME = "frames.json"
MIN_BOX_SIDE = 1.0  # px; thinner boxes (left by a crop's clipping) would trip SSD's degenerate-box check


@dataclass(frozen=True)
class DetectionSample:
    """One training or validation image and its garments.

    Attributes:
        source: "frame" (an annotated video frame) or "image" (a product image).
        path: the file to read: the cached frame JPEG or the product image.
        boxes: (x1, y1, x2, y2) per garment, in the image's pixels.
        categories: per garment, its index in `labels.CATEGORIES`.
        video_id, frame_index: set for frames; item_id, img_name: set for product images.
    """

    source: str
    path: str
    boxes: tuple[tuple[float, float, float, float], ...]
    categories: tuple[int, ...]
    video_id: str = ""
    frame_index: int = -1
    item_id: str = ""
    img_name: str = ""


def _video_key(video: Video, indices: list[int]) -> str:
    stat = video.path.stat()
    raw = json.dumps([str(video.path.resolve()), stat.st_size, stat.st_mtime_ns, indices])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _cache_video(video: Video, cache_root: Path, indices: list[int]) -> dict[int, Path] | None:
    """Decode the given frames of a video into its cache folder (once); None when it cannot be read."""
    from imagesearch.data.video import VideoError, read_frames  # decoding is only needed here

    folder = cache_root / f"{video.video_id}_{_video_key(video, indices)}"
    index = folder / FRAME_INDEX_NAME
    if index.is_file():
        names = json.loads(index.read_text(encoding="utf-8"))
        return {int(k): folder / v for k, v in names.items()}
    try:
        frames = read_frames(video.path, indices)
    except VideoError as exc:
        log.warning("%s; its frames are left out", exc)
        return None
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for i, rgb in zip(indices, frames, strict=True):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"cannot encode frame {i} of {video.path}")
        (folder / f"{i}.jpg").write_bytes(buf.tobytes())
        names[str(i)] = f"{i}.jpg"
    atomic_write_text(index, json.dumps(names))
    return {int(k): folder / v for k, v in names.items()}


def cache_frames(
    split: Split, cache_root: str | Path, workers: int = 0, progress: bool = True,
    wanted: Collection[tuple[str, int]] | None = None,
) -> dict[tuple[str, int], Path]:  # fmt: skip
    """Decode the annotated frames of the split's present videos into `cache_root`, once.

    Args:
        split: a loaded split.
        cache_root: parent folder of the per-video frame folders.
        workers: decoding threads (OpenCV releases the GIL while decoding); 0 or 1 decodes in turn.
        progress: show a tqdm bar.
        wanted: only these (video_id, frame_index) pairs (a validation budget's draw); None = every
            annotated frame. Nothing else is decoded.

    Returns:
        (video_id, frame_index) -> cached RGB JPEG path. Missing or unreadable videos are left out
        (logged with a count).
    """
    root = Path(cache_root)
    frames_of = {
        v.video_id: sorted({f.frame_index for f in v.frames if wanted is None or (v.video_id, f.frame_index) in wanted})
        for v in split.videos.values()
    }
    videos = [v for v in split.videos.values() if v.present and frames_of[v.video_id]]
    missing = sum(1 for v in split.videos.values() if frames_of[v.video_id] and not v.present)
    bar = progress_bar(total=len(videos), enabled=progress, desc="detector: caching frames")

    def one(video: Video) -> tuple[str, dict[int, Path] | None]:
        out = _cache_video(video, root, frames_of[video.video_id])
        bar.update()
        return video.video_id, out

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, videos))
    else:
        results = [one(v) for v in videos]
    bar.close()
    unreadable = sum(1 for _, r in results if r is None)
    if missing or unreadable:
        log.info("detector frames: %d annotated videos missing, %d unreadable; left out", missing, unreadable)
    return {(vid, i): path for vid, paths in results if paths for i, path in paths.items()}


def build_samples(
    split: Split,
    cache_root: str | Path,
    frames: bool = True,
    images: bool = True,
    keep_empty: bool = False,
    workers: int = 0,
    progress: bool = True,
    budget: int = 0,
    seed: int = 0,
) -> list[DetectionSample]:
    """The detection samples of a split: annotated frames of present videos and product images.

    Args:
        split: a loaded split.
        cache_root: where decoded frames are cached (see `cache_frames`).
        frames, images: include each source.
        keep_empty: keep images and frames whose annotation lists no garment, as negatives (the real
            data has such frames; whether they truly show no garment is not known, so off by default).
        workers: frame-decoding threads.
        progress: show tqdm bars.
        budget: > 0: a seeded draw of at most this many samples (a validation budget), drawn before
            any frame is decoded, so that only the drawn frames are; 0 = all.
        seed: the draw's seed.

    Returns:
        Frames (by video, then frame index), then product images (by item, then image).
    """
    candidates: list[DetectionSample] = []
    if frames:
        for video in split.videos.values():
            for frame in video.frames:
                if video.present and (frame.boxes or keep_empty):
                    candidates.append(DetectionSample(
                        "frame", "", tuple(b.xyxy for b in frame.boxes),
                        tuple(CATEGORY_INDEX[b.label] for b in frame.boxes),
                        video_id=video.video_id, frame_index=frame.frame_index,
                    ))  # fmt: skip
    if images:
        for im in split.annotated_images():  # an unannotated image's empty box list means "unknown"
            if im.boxes or keep_empty:
                boxes, cats = tuple(b.xyxy for b in im.boxes), tuple(CATEGORY_INDEX[b.label] for b in im.boxes)
                candidates.append(
                    DetectionSample("image", str(im.path), boxes, cats, item_id=im.item_id, img_name=im.img_name)
                )
    if 0 < budget < len(candidates):
        keep = np.sort(np.random.default_rng(seed).choice(len(candidates), size=budget, replace=False))
        candidates = [candidates[i] for i in keep]
    wanted = {(s.video_id, s.frame_index) for s in candidates if s.source == "frame"}
    cached = cache_frames(split, cache_root, workers, progress, wanted) if wanted else {}
    samples = []
    for s in candidates:
        if s.source == "image":
            samples.append(s)
        elif (s.video_id, s.frame_index) in cached:  # a frame that decoded
            samples.append(dataclasses.replace(s, path=str(cached[(s.video_id, s.frame_index)])))
    return samples


class DetectionDataset(Dataset):
    """Detection samples as (image, target) pairs for torchvision's SSD.

    Args:
        samples: from `build_samples`.
        transform: `detection_transform(train, cfg, size, normalize=False)`: a callable
            `t(image=rgb, bboxes=(K, 4), labels=list)` -> {"image", "bboxes", "labels"}.
        classes: "garment" (label 1 for all) or "category" (1 + category index).

    `__getitem__` returns (image (3, S, S) uint8, {"boxes": (K, 4) float32 xyxy in the transformed
    image's pixels, "labels": (K,) int64}); K may be 0 (a crop can remove every garment).
    """

    def __init__(self, samples: Sequence[DetectionSample], transform: Callable[..., dict[str, Any]], classes: str):
        self.samples = list(samples)
        self.transform = transform
        self.classes = classes

    def __len__(self) -> int:
        return len(self.samples)

    def load_rgb(self, index: int) -> np.ndarray:
        path = self.samples[index].path
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {path} (a cached frame: delete its folder to rebuild it)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        sample = self.samples[index]
        labels = [label_of(CATEGORIES[c], self.classes) for c in sample.categories]
        boxes = np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)
        out = self.transform(image=self.load_rgb(index), bboxes=boxes, labels=labels)
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        labels_arr = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
        target = {"boxes": torch.from_numpy(boxes[keep]), "labels": torch.from_numpy(labels_arr[keep])}
        return out["image"], target


def seed_worker_transform(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: give each worker's albumentations pipeline its own seed.

    An albumentations `Compose` keeps its own random state, which every worker would otherwise
    inherit identically (the same augmentations in each worker's batches, and runs that a seed does not
    reproduce). The worker's torch seed comes from the DataLoader's seeded generator, so it is both
    distinct per worker and epoch and reproducible.
    """
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if callable(getattr(transform, "set_random_seed", None)):
        transform.set_random_seed(info.seed % 2**32)


def collate(batch: Sequence[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Stack same-size images into (N, 3, S, S); targets stay a list of per-image dicts."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)
