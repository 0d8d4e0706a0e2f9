"""The report's pictures: frame and product-image thumbnails with their boxes drawn, and GIFs.

Written at report time for the videos the page shows only: their sampled frames are decoded again
(`data.video.read_frames`, about 0.16 s per video of 10 frames) rather than kept from the matcher
run, which would write a thumbnail for every sampled frame of every video (~100k files on a full
split) to show `report.max_videos` of them.

Box colours (BGR here; `LEGEND` says the same in words for the page):
- frames: annotated product instances yellow (thin), the other query boxes grey (thin), the reported
  frame box thick, green when the predicted item is right, red when wrong, blue when unknown
  (a split without annotations);
- product images: the annotated boxes of the item's instances yellow (thin), the matched crop thick green.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imagesearch.data.records import ProductImage, Video
from imagesearch.data.video import VideoError, read_frames
from imagesearch.matching.decisions import VideoTrace

log = logging.getLogger(__name__)

__all__ = ["LEGEND", "frame_thumbs", "gif", "product_thumb"]

GREEN, RED, BLUE, YELLOW, GREY = (60, 180, 60), (40, 40, 220), (220, 120, 30), (0, 215, 255), (170, 170, 170)
# (CSS colour, line, meaning, pages it appears on: "scored", "unscored" or "both")
LEGEND = (
    ("#ffd700", "thin", "annotated product instance (frames and product images)", "scored"),
    ("#aaaaaa", "thin", "another box the matcher queried in that frame", "both"),
    ("#3cb43c", "thick", "the reported frame box, predicted item right", "scored"),
    ("#dc2828", "thick", "the reported frame box, predicted item wrong", "scored"),
    ("#1e78dc", "thick", "the reported frame box (no annotations: right or wrong unknown)", "unscored"),
    (
        "#3cb43c",
        "thick",
        "on a product image: the matched crop (for the predicted item, the reported product box)",
        "both",
    ),
)


def _shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, side / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


def _write_jpeg(path: Path, bgr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def _box(img: np.ndarray, box: Sequence[float], scale: float, color: tuple[int, int, int], width: int) -> None:
    x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, width)


def frame_thumbs(
    folder: Path, video: Video, trace: VideoTrace, right: bool | None, side: int
) -> list[tuple[int, Path]]:
    """Decode a shown video's sampled frames again and write them with their boxes as JPEG thumbnails.

    Args:
        folder: the report's `img/` folder.
        video: the video record (its annotated frames give the yellow boxes).
        trace: its decided trace (sampled frames, query boxes, the reported entries).
        right: the predicted item is right (True), wrong (False) or unknown (None: no annotations).
        side: longer side of a thumbnail in pixels.

    Returns:
        (frame index, path) per sampled frame; empty when the video cannot be decoded now.
    """
    try:
        frames = read_frames(video.path, trace.frame_indices)
    except VideoError as exc:
        log.warning("report: %s: %s; its frames are not shown", video.video_id, exc)
        return []
    annotated = {f.frame_index: f for f in video.frames}
    chosen = {(e.frame_index, e.frame_box) for e in trace.decision.results} if trace.decision else set()
    colour = BLUE if right is None else (GREEN if right else RED)
    out = []
    for i, rgb in zip(trace.frame_indices, frames, strict=True):
        img, scale = _shrink(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), side)
        for b in annotated[i].boxes if i in annotated else []:
            if b.instance_id > 0:
                _box(img, b.xyxy, scale, YELLOW, 1)
        for q in trace.queries:
            if q.frame_index == i and (i, q.box) not in chosen:
                _box(img, q.box, scale, GREY, 1)
        for fi, fb in chosen:
            if fi == i:
                _box(img, fb, scale, colour, 3)
        path = folder / f"v{trace.video_id}_f{i}.jpg"
        _write_jpeg(path, img)
        out.append((i, path))
    return out


def product_thumb(path: Path, image: ProductImage | None, box: Sequence[float], side: int) -> Path | None:
    """A product image with its annotated instance boxes (yellow) and the matched crop `box` (green).

    Returns:
        `path`, or None when the image is unknown or unreadable.
    """
    bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR) if image is not None else None
    if bgr is None or image is None:
        return None
    small, scale = _shrink(bgr, side)
    for b in image.boxes:
        if b.instance_id > 0:
            _box(small, b.xyxy, scale, YELLOW, 1)
    _box(small, box, scale, GREEN, 3)
    _write_jpeg(path, small)
    return path


def gif(frames: list[tuple[int, Path]], path: Path, ms: int) -> Path | None:
    """An animated GIF of the frame thumbnails (Pillow), `ms` per frame; None without frames."""
    images = [Image.open(p).convert("RGB") for _, p in frames]
    if not images:
        return None
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return path
