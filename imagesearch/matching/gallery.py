"""The gallery: feature parts of every product-image garment, built once and cached on disk.

A gallery row is one garment of one product image: its box comes from the image annotation
(`boxes: annotated`) or from the detector (`boxes: detector`), its category from the annotation or
from the classifier. The feature parts ("global", "lbp", see `features.extract`) are stored
unfused, so the fusion weight can change without a rebuild.

Cache: `<cache_dir>/<key>/parts.npz` + `meta.json` (rows and provenance, written last and
atomically: a folder without it is incomplete and is rebuilt). The key is a SHA-1 of everything
that decides the rows: the gallery and feature settings, the split (each product image's path, size,
mtime and annotation boxes) and the content of every model file used (`file_fingerprint`). A
changed checkpoint, setting or image therefore gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from imagesearch.config import config_to_dict
from imagesearch.data.records import ProductImage, Split
from imagesearch.features.extract import CropFeatures
from imagesearch.io import atomic_write_text, file_fingerprint
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

__all__ = ["Gallery", "GalleryConfig", "GalleryRecord", "build_gallery", "file_fingerprint", "gallery_key"]

BOX_SOURCES = ("annotated", "detector")
CACHE_VERSION = 3  # 2: detector galleries fall back to the best box or the whole image; 3: the detector post-processes


@dataclass
class GalleryConfig:
    """The `gallery` section of an evaluation config.

    Attributes:
        boxes: "annotated" (the image annotations' boxes) or "detector" (the detector's, on every image).
        include_distractors: annotated boxes only: also keep garments with instance_id 0.
        cache_dir: parent folder of the gallery caches.
        chunk_images: product images read and embedded per chunk (bounds the memory of images).
        decode_workers: threads reading the product images of a chunk (cv2 decodes without the GIL); 0 or 1
            reads them one after the other.
    """

    boxes: str = "annotated"
    include_distractors: bool = False
    cache_dir: str = "data/cache/gallery"
    chunk_images: int = 256
    decode_workers: int = 4


@dataclass(frozen=True)
class GalleryRecord:
    """One gallery row.

    Attributes:
        item_id: the product.
        img_name: the product image file name, e.g. "3.jpg".
        box: (x1, y1, x2, y2) in the product image's pixels.
        label: canonical category (annotated, or the classifier's for detector boxes); None if unknown.
        instance_id: the annotated instance (> 0) of an annotated box, 0 for a distractor; always 0
            for detector boxes (predictions never read annotations).
        score: 1.0 for an annotated box, else the detector's score.
        source: where the box comes from: "annotated", "detector" (a detection kept by the gallery's
            rules), "detector_low" (the image's best detection, below `min_score`: the image had no
            other) or "whole_image" (the detector found nothing at all), so that no item is unreachable.
    """

    item_id: str
    img_name: str
    box: tuple[float, float, float, float]
    label: str | None
    instance_id: int
    score: float = 1.0
    source: str = "annotated"


@dataclass
class Gallery:
    """Gallery rows, their feature parts and the cache key they were built under.

    Attributes:
        records: G rows.
        parts: {"global": (G, Dg), "lbp": (G, Dl)} float32, rows L2-normalised.
        key: the cache key.
        folder: the cache folder, or None when built without one.
        built: True when this call computed the features (False: read from the cache).
    """

    records: list[GalleryRecord]
    parts: dict[str, np.ndarray]
    key: str
    folder: Path | None = None
    built: bool = False
    images: dict[str, ProductImage] = field(default_factory=dict)  # "item_id/img_name" -> image, for reports

    def __len__(self) -> int:
        return len(self.records)

    def features(self, fuse: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
        """(G, D) fused features, e.g. `gallery.features(extractor.fuse)`."""
        return fuse(self.parts)

    @property
    def item_ids(self) -> list[str]:
        return [r.item_id for r in self.records]


class Detects(Protocol):
    """What the gallery and the matcher need of a detector (`detector.Detector`): its post-processed boxes,
    `detect(frames, keep_best) -> [{"boxes", "scores", "labels"}]`, the score threshold it applied
    (`post.min_score`) and what decides its boxes besides its weights file (`key_config()`)."""

    post: Any

    def detect(self, frames: Sequence[np.ndarray], keep_best: bool = False) -> list[dict[str, np.ndarray]]: ...

    def key_config(self) -> dict[str, Any]: ...


class LabelsBoxes(Protocol):
    """What the gallery and the matcher need of a classifier: a category name per box of the given
    images (`evaluation.models.CropClassifier`, which cuts the crops by the features' crop path)."""

    def box_labels(
        self, images: Sequence[np.ndarray], owners: np.ndarray, boxes: np.ndarray, margin: float, max_side: int
    ) -> list[str]: ...


def _split_fingerprint(split: Split, with_boxes: bool) -> str:
    """The product images' paths and file stamps, and their annotated boxes when the gallery uses them."""
    h = hashlib.sha1(str(split.root.resolve()).encode())
    for im in split.product_images():
        try:
            st = im.path.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        boxes = [(b.xyxy, b.label, b.instance_id) for b in im.boxes] if with_boxes else []
        h.update(f"{im.item_id}/{im.img_name}:{stamp}:{boxes}".encode())
    return h.hexdigest()


def gallery_key(
    split: Split, extractor: CropFeatures, cfg: GalleryConfig, model_files: Sequence[str | Path] = (),
    detector: Detects | None = None,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The cache key of a gallery and the description it hashes.

    Args:
        split: the split whose product images form the gallery.
        extractor: the feature extractor (its settings, crop geometry and weight files count).
        cfg: the gallery settings (`cache_dir`, `chunk_images` and `decode_workers` do not count).
        model_files: further files the rows depend on (detector, classifier checkpoints).
        detector: with detector boxes, its post-processing counts (`key_config`).

    Returns:
        (16 hex digits, the JSON-ready description that was hashed).
    """
    settings = {
        k: v for k, v in config_to_dict(cfg).items() if k not in ("cache_dir", "chunk_images", "decode_workers")
    }
    files = [*extractor.files, *map(Path, model_files)]
    desc = {
        "version": CACHE_VERSION,
        "gallery": settings,
        "detector": detector.key_config() if cfg.boxes == "detector" and detector is not None else None,
        "features": extractor.key_config(),
        "split": _split_fingerprint(split, with_boxes=cfg.boxes == "annotated"),
        "files": {str(f): file_fingerprint(f) for f in files},
    }
    key = hashlib.sha1(json.dumps(desc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return key, desc


def _read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _annotated_rows(im: ProductImage, cfg: GalleryConfig) -> list[GalleryRecord]:
    return [
        GalleryRecord(im.item_id, im.img_name, tuple(map(float, b.xyxy)), b.label, b.instance_id)  # type: ignore[arg-type]
        for b in im.boxes
        if cfg.include_distractors or b.instance_id > 0
    ]


def _detected_rows(im: ProductImage, det: dict[str, np.ndarray], size: tuple[int, int], min_score: float) -> list[GalleryRecord]:  # fmt: skip
    """The gallery rows of one product image from its detections (`size` = (height, width)).

    The detector's boxes as it post-processed them with `keep_best` (source "detector", or "detector_low"
    for an image's single best box below `min_score`); an image with no detection at all gives the whole
    image ("whole_image"): every item stays reachable. Annotations are never read here.
    """
    rows = [
        GalleryRecord(im.item_id, im.img_name, tuple(map(float, box)), None, 0, float(score),  # type: ignore[arg-type]
                      "detector" if score >= min_score else "detector_low")
        for box, score in zip(det["boxes"], det["scores"], strict=True)
    ]  # fmt: skip
    if rows:
        return rows
    whole = (0.0, 0.0, float(size[1]), float(size[0]))
    return [GalleryRecord(im.item_id, im.img_name, whole, None, 0, 0.0, "whole_image")]


def _read_chunk(images: Sequence[ProductImage], workers: int) -> list[tuple[ProductImage, np.ndarray | None]]:
    if workers <= 1 or len(images) <= 1:
        return [(im, _read_rgb(im.path)) for im in images]
    with ThreadPoolExecutor(min(workers, len(images))) as pool:
        return list(zip(images, pool.map(lambda im: _read_rgb(im.path), images), strict=True))


def _compute(
    split: Split,
    extractor: CropFeatures,
    cfg: GalleryConfig,
    detector: Detects | None,
    classify: LabelsBoxes | None,
    progress: bool,
) -> tuple[list[GalleryRecord], dict[str, np.ndarray]]:
    images = split.product_images()
    records: list[GalleryRecord] = []
    chunks: list[dict[str, np.ndarray]] = []
    bar = progress_bar(total=len(images), enabled=progress, desc="gallery", unit="img")
    step = max(1, cfg.chunk_images)
    for start in range(0, len(images), step):
        loaded = _read_chunk(images[start : start + step], cfg.decode_workers)
        for im, rgb in loaded:
            if rgb is None:
                log.warning("cannot read product image %s; it is left out of the gallery", im.path)
        readable = [(im, rgb) for im, rgb in loaded if rgb is not None]
        if cfg.boxes == "detector":
            assert detector is not None
            dets = detector.detect([rgb for _, rgb in readable], keep_best=True) if readable else []
            floor = detector.post.min_score
            rows = [(j, r) for j, ((im, rgb), d) in enumerate(zip(readable, dets, strict=True)) for r in _detected_rows(im, d, rgb.shape[:2], floor)]  # fmt: skip
        else:
            rows = [(j, r) for j, (im, _) in enumerate(readable) for r in _annotated_rows(im, cfg)]
        recs = [r for _, r in rows]
        pictures = [rgb for _, rgb in readable]
        if rows:
            owners = np.array([j for j, _ in rows], np.int64)
            boxes = np.array([r.box for _, r in rows], np.float64)
            if classify is not None:
                labels = classify.box_labels(pictures, owners, boxes, extractor.margin, extractor.max_side)
                recs = [GalleryRecord(**{**asdict(r), "label": lab}) for r, lab in zip(recs, labels, strict=True)]
            # The same crop path as the queries (extractor.crop_path, part of the cache key).
            chunks.append(extractor.box_parts(pictures, owners, boxes, extractor.margin, extractor.max_side))
            records += recs
        bar.update(len(loaded))
    bar.close()
    if not records:
        raise ValueError(f"{split.root}: the gallery is empty (no product-image box with boxes={cfg.boxes!r})")
    parts = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    return records, parts


def _save(folder: Path, records: list[GalleryRecord], parts: dict[str, np.ndarray], desc: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".parts.{uuid.uuid4().hex}.npz"
    try:
        np.savez(tmp, **parts)
        os.replace(tmp, folder / "parts.npz")
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"description": desc, "records": [asdict(r) for r in records]}
    # meta.json last: its presence marks a complete cache folder.
    atomic_write_text(folder / "meta.json", json.dumps(meta, ensure_ascii=False) + "\n")


def _load(folder: Path) -> tuple[list[GalleryRecord], dict[str, np.ndarray]]:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    records = [GalleryRecord(**{**r, "box": tuple(r["box"])}) for r in meta["records"]]
    with np.load(folder / "parts.npz") as data:
        parts = {k: data[k] for k in data.files}
    bad = {k: len(v) for k, v in parts.items() if len(v) != len(records)}
    if bad:
        raise ValueError(f"{folder}: corrupt gallery cache ({len(records)} records, parts {bad}); delete the folder")
    return records, parts


def build_gallery(
    split: Split,
    extractor: CropFeatures,
    cfg: GalleryConfig,
    detector: Detects | None = None,
    classify: LabelsBoxes | None = None,
    model_files: Sequence[str | Path] = (),
    use_cache: bool = True,
    progress: bool = True,
) -> Gallery:
    """The gallery of a split's product images, read from the cache when its key matches.

    Args:
        split: the split (its product images and their annotations).
        extractor: crop features.
        cfg: gallery settings.
        detector: needed for `boxes: detector`.
        classify: boxes -> category names (`LabelsBoxes`), replacing the annotated label (used with
            detector boxes).
        model_files: the detector / classifier checkpoint files behind `detector` and `classify`; they
            enter the cache key by content.
        use_cache: read and write `<cache_dir>/<key>/`.
        progress: tqdm bars.

    Returns:
        The `Gallery` (`built` says whether features were computed).

    Raises:
        ValueError: an unknown box source, detector boxes without a detector, or an empty gallery.
    """
    if cfg.boxes not in BOX_SOURCES:
        raise ValueError(f"gallery.boxes: unknown {cfg.boxes!r}; choose one of {list(BOX_SOURCES)}")
    if cfg.boxes == "detector" and detector is None:
        raise ValueError("gallery.boxes: 'detector' needs a detector checkpoint (detector.checkpoint)")
    if cfg.boxes == "annotated" and not split.annotated_images():
        raise ValueError(
            f"gallery.boxes: 'annotated' needs annotated product images and {split.root} has none "
            "(a test split?): use gallery.boxes=detector with a detector checkpoint"
        )
    key, desc = gallery_key(split, extractor, cfg, model_files, detector)
    folder = Path(cfg.cache_dir) / key
    images = {f"{im.item_id}/{im.img_name}": im for im in split.product_images()}
    if use_cache and (folder / "meta.json").is_file():
        records, parts = _load(folder)
        log.info("gallery: %d rows read from the cache %s", len(records), folder)
        return Gallery(records, parts, key, folder, built=False, images=images)
    records, parts = _compute(split, extractor, cfg, detector, classify, progress)
    if use_cache:
        _save(folder, records, parts, desc)
        log.info("gallery: %d rows built and cached in %s", len(records), folder)
    return Gallery(records, parts, key, folder if use_cache else None, built=True, images=images)
