"""The evaluation report (SPEC §3 stage 8): one HTML page, worst videos first, with JPEG thumbnails.

Per video: the sampled frames with the annotated product boxes (yellow), the query boxes (grey)
and the chosen evidence box (green when the item is right, red when wrong); then the top-ranked
items, each as the product image of its closest match with that box, framed green (a true item)
or red. Images are small JPEGs in `img/` beside `report.html`, linked relatively; the page has
no scripts and no external resources. With `gif`, an animated GIF of the sampled frames per video
(Pillow).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from imagesearch.data.records import Split, Video
from imagesearch.io import atomic_write_text
from imagesearch.matching.gallery import Gallery
from imagesearch.matching.matcher import VideoTrace
from imagesearch.metrics.official import ScoreReport, VideoScore

log = logging.getLogger(__name__)

__all__ = ["FrameThumbs", "write_report"]

BLUE = (230, 120, 20)  # BGR: the chosen box of a video that cannot be scored (no annotation)
GREEN, RED, YELLOW, GREY = (60, 180, 60), (40, 40, 220), (0, 215, 255), (170, 170, 170)  # BGR
CSS = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
section{background:#fff;border:1px solid #ddd;border-left:8px solid #c33;margin:1em 0;padding:.5em 1em}
section.hit{border-left-color:#3a3}section.partial{border-left-color:#e90}
.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}
figure{margin:0;font-size:12px;text-align:center}img{display:block}
figure.right img{outline:4px solid #3a3;outline-offset:-4px}figure.wrong img{outline:4px solid #c33;outline-offset:-4px}
.muted{color:#777}
"""


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


class FrameThumbs:
    """The matcher's frame hook: keeps a small copy of every sampled frame for the report.

    Args:
        folder: where the thumbnails go (`<out_dir>/img`).
        side: longer side of a thumbnail in pixels.
    """

    def __init__(self, folder: str | Path, side: int = 240) -> None:
        self.folder = Path(folder)
        self.side = side
        self.scales: dict[tuple[str, int], float] = {}

    def path(self, video_id: str, frame_index: int) -> Path:
        return self.folder / f"v{video_id}_f{frame_index}.jpg"

    def __call__(self, video: Video, indices: list[int], frames: list[np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, rgb in zip(indices, frames, strict=True):
            small, scale = _shrink(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.side)
            _write_jpeg(self.path(video.video_id, i), small)
            self.scales[(video.video_id, i)] = scale


def _box(img: np.ndarray, box: Sequence[float], scale: float, color: tuple[int, int, int], width: int) -> None:
    x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, width)


def _draw_frames(trace: VideoTrace, video: Video, thumbs: FrameThumbs, right: bool | None) -> list[tuple[int, Path]]:
    """Draw the boxes on the video's frame thumbnails in place; returns (frame index, path) pairs."""
    annotated = {f.frame_index: f for f in video.frames}
    chosen = {(e.frame_index, e.frame_box) for e in trace.decision.results} if trace.decision else set()
    out = []
    for i in trace.frame_indices:
        path, scale = thumbs.path(trace.video_id, i), thumbs.scales.get((trace.video_id, i))
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if scale is not None else None
        if img is None:
            continue
        for b in annotated[i].boxes if i in annotated else []:
            if b.instance_id > 0:
                _box(img, b.xyxy, scale, YELLOW, 1)
        for q in trace.queries:
            if q.frame_index == i and (i, q.box) not in chosen:
                _box(img, q.box, scale, GREY, 1)
        for fi, fb in chosen:
            if fi == i:
                _box(img, fb, scale, BLUE if right is None else GREEN if right else RED, 3)
        _write_jpeg(path, img)
        out.append((i, path))
    return out


def _item_thumb(out: Path, gallery: Gallery, item_id: str, img_name: str, box: Sequence[float], name: str, side: int) -> Path | None:  # fmt: skip
    image = gallery.images.get(f"{item_id}/{img_name}") or gallery.images.get(f"{item_id}/{img_name}.jpg")
    bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR) if image is not None else None
    if bgr is None:
        return None
    small, scale = _shrink(bgr, side)
    _box(small, box, scale, GREEN, 3)
    path = out / "img" / name
    _write_jpeg(path, small)
    return path


def _gif(frames: list[tuple[int, Path]], path: Path, ms: int) -> Path | None:
    images = [Image.open(p).convert("RGB") for _, p in frames]
    if not images:
        return None
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return path


def _badness(vs: VideoScore | None, trace: VideoTrace) -> tuple[int, str]:
    levels = (vs.s1 + vs.s2 + vs.s3) if vs is not None else 0
    return (levels, trace.video_id)


def _summary(metrics: dict[str, Any]) -> str:
    v = metrics["videos"]
    if not metrics.get("annotated", True):  # a test split: predictions only
        return (f"<p>No annotations: predictions only. videos: {v['total']} in the split, {v['predicted']} predicted, "
                f"{v['missing']} missing, {v['unreadable']} unreadable</p>")  # fmt: skip
    rows = []
    for scope in ("all", "present"):
        o = metrics["official"][scope]
        topk = metrics["topk"][scope] or {}
        cells = [f"{o[lv]['f1']:.3f}" for lv in ("s1", "s2", "s3")] + [f"{o['score']:.3f}"]
        cells += [f"{topk.get(k, 0.0):.3f}" for k in ("top1", "top5", "top20")]
        rows.append(
            f"<tr><th>{scope} ({o['num_videos']} videos)</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    head = "<tr><th>scope</th><th>F1 S1</th><th>F1 S2</th><th>F1 S3</th><th>score</th><th>top-1</th><th>top-5</th><th>top-20</th></tr>"  # fmt: skip
    extra = []
    if metrics.get("crop_recall"):
        cr = metrics["crop_recall"]
        extra.append(f"per-crop recall@1/5/20: {cr['recall@1']:.3f} / {cr['recall@5']:.3f} / {cr['recall@20']:.3f} ({cr['num_crops']} crops)")  # fmt: skip
    if metrics.get("detector_ap50"):
        d = metrics["detector_ap50"]
        extra.append(f"detector AP@0.5: {d['ap50']:.3f} ({d['num_frames']} frames, {d['num_gt']} boxes)")
    extra.append(f"videos: {v['annotated']} annotated, {v['evaluated']} evaluated, {v['predicted']} predicted, "
                 f"{v['missing']} missing, {v['unreadable']} unreadable")  # fmt: skip
    return f"<table>{head}{''.join(rows)}</table>" + "".join(f"<p>{html.escape(e)}</p>" for e in extra)


def _section(out: Path, split: Split, trace: VideoTrace, vs: VideoScore | None, gallery: Gallery, cfg: Any, thumbs: FrameThumbs) -> str:  # fmt: skip
    esc = html.escape
    true_items = set(vs.true_items) if vs is not None else set()
    scored = split.videos[trace.video_id].annotated
    right = vs.s1 if vs is not None else None
    frames = _draw_frames(trace, split.videos[trace.video_id], thumbs, right)
    cls = "hit" if vs is not None and vs.s3 else ("partial" if right else "")
    d = trace.decision
    title = f"video {trace.video_id}: {vs.reason if vs is not None else trace.status}"
    marks = " ".join(f"{lv.upper()} {'✓' if vs is not None and getattr(vs, lv) else '✗'}" for lv in ("s1", "s2", "s3"))
    marks = marks if scored else "not annotated: not scored"
    info = (f"true item(s): {', '.join(sorted(true_items)) or '-'} · predicted: {d.item_id if d and d.item_id else '-'}"
            f" · frame {d.frame_index if d and d.frame_index is not None else '-'} · {len(trace.queries)} garments")  # fmt: skip
    parts = [f'<section class="{cls}"><h2>{esc(title)}</h2><p>{esc(marks)} · {esc(info)}</p><div class="row">']
    for i, p in frames:
        parts.append(
            f'<figure><img src="img/{esc(p.name)}" alt="frame {i}"><figcaption>frame {i}</figcaption></figure>'
        )
    parts.append('</div><div class="row">')
    # The order of result.json's ranked_items: the chosen item first (one-to-one may have moved it), then the vote.
    ranked = sorted(d.ranked, key=lambda s: s.item_id != d.item_id) if d else []
    for rank, s in enumerate(ranked[: cfg.top_k], 1):
        name = f"v{trace.video_id}_r{rank}.jpg"
        path = _item_thumb(out, gallery, s.item_id, s.evidence.img_name, s.evidence.item_box, name, cfg.thumb_side)
        state = ("right" if s.item_id in true_items else "wrong") if scored else ""
        cap = f"#{rank} {s.item_id}/{s.evidence.img_name} · {s.votes} votes · d={s.evidence.distance:.3f}"
        img = f'<img src="img/{esc(name)}" alt="{esc(s.item_id)}">' if path is not None else ""
        parts.append(f'<figure class="{state}">{img}<figcaption>{esc(cap)}</figcaption></figure>')
    parts.append("</div>")
    if cfg.gif and frames:
        gif = _gif(frames, out / "img" / f"v{trace.video_id}.gif", cfg.gif_ms)
        if gif is not None:
            parts.append(f'<p><a href="img/{esc(gif.name)}">animated GIF</a></p>')
    return "".join(parts) + "</section>"


def write_report(
    out: str | Path,
    split: Split,
    traces: Sequence[VideoTrace],
    report: ScoreReport | None,
    gallery: Gallery,
    cfg: Any,
    thumbs: FrameThumbs,
    metrics: dict[str, Any],
) -> Path:
    """Write `<out>/report.html` (and its images in `<out>/img/`).

    Args:
        out: the evaluation output folder.
        split: the evaluated split.
        traces: the matcher's traces (decided).
        report: the official score over all videos (per-video levels and reasons); None for a split
            without annotations (no right / wrong marks).
        gallery: the gallery (product images for the item thumbnails).
        cfg: a `ReportConfig`.
        thumbs: the frame thumbnails written during matching.
        metrics: the metrics dict (the summary at the top).

    Returns:
        The path of report.html.
    """
    out = Path(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    scores = {v.video_id: v for v in report.videos} if report is not None else {}
    shown = sorted((t for t in traces if t.frame_indices), key=lambda t: _badness(scores.get(t.video_id), t))
    skipped = [t for t in traces if t.status in ("missing", "unreadable")]
    body = [f"<h1>imagesearch evaluation: {html.escape(str(split.root))}</h1>", _summary(metrics)]
    for t in tqdm(shown[: cfg.max_videos], desc="report", unit="video", disable=len(shown) < 20):
        body.append(_section(out, split, t, scores.get(t.video_id), gallery, cfg, thumbs))
    if len(shown) > cfg.max_videos:
        body.append(f"<p class='muted'>{len(shown) - cfg.max_videos} better videos not shown (report.max_videos).</p>")
    if skipped:
        rows = "".join(f"<tr><td>{html.escape(t.video_id)}</td><td>{html.escape(t.status)}</td></tr>" for t in skipped)
        body.append(f"<h2>Skipped videos ({len(skipped)})</h2><table><tr><th>video</th><th>why</th></tr>{rows}</table>")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>imagesearch report</title>'
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return atomic_write_text(out / "report.html", page)
