"""A live-stream clip of an item: the product worn or held over a cluttered, drifting background.

Speed: the host (figure + garments) is drawn once per viewpoint as a sprite at the clip's largest scale;
each frame is a crop of a pre-drawn background canvas, a few moving shapes, the sprite resized
(cached per size) and pasted through its mask, and a brightness change. Boxes of the annotated frames
come from the same resized label map that was pasted, so they match the pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imagesearch.synthetic.config import SyntheticConfig, annotated_frame_indices
from imagesearch.synthetic.items import ItemSpec, random_distractor
from imagesearch.synthetic.render import (
    Garment,
    Layer,
    View,
    annotation,
    draw_layers,
    figure_layers,
    garment_layer,
    layers_bounds,
    visible_box,
)
from imagesearch.synthetic.shapes import LOWER, SET_TOPS

RACK_LABEL = 10  # label-map ids of hanging distractors in the background canvas: 10, 11


@dataclass
class Script:
    """Per-frame motion of a clip, all arrays of length `frames`.

    scale: body units -> pixels; cx, cy: frame position of the product's centre; visible: host drawn;
    back: host seen from behind; gain: brightness; ox, oy: background crop offset.
    """

    scale: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    visible: np.ndarray
    back: np.ndarray
    gain: np.ndarray
    ox: np.ndarray
    oy: np.ndarray


def _wave(t: np.ndarray, rng: np.random.Generator, amplitude: float, lo: float, hi: float) -> np.ndarray:
    """A smooth random motion: two sines with random periods (frames) in [lo, hi] and random phases."""
    out = np.zeros_like(t, dtype=np.float64)
    for weight in (0.7, 0.3):
        period, phase = rng.uniform(lo, hi), rng.uniform(0, 2 * np.pi)
        out += weight * amplitude * np.sin(2 * np.pi * t / period + phase)
    return out


def make_script(
    item: ItemSpec,
    product_hw: tuple[float, float],
    cfg: SyntheticConfig,
    margins: tuple[int, int],
    rng: np.random.Generator,
) -> Script:
    """Draw the clip's motion: zoom, position, entry, turning round, lighting and background drift.

    Args:
        item: the item (late start, back turn).
        product_hw: height and width of the product pieces in body units.
        cfg: sizes and frame count.
        margins: (mx, my) background canvas margins = the largest drift in pixels.
        rng: the clip's generator.
    """
    t = np.arange(cfg.frames, dtype=np.float64)
    h, w = cfg.height, cfg.width
    fill = np.clip(rng.uniform(0.45, 0.72) + _wave(t, rng, 0.12, 120, 400), 0.3, 0.85)
    scale = np.minimum(fill * h / product_hw[0], 0.9 * w / product_hw[1])
    cx = w * (0.5 + _wave(t, rng, 0.12, 100, 300))
    cy = h * (0.5 + _wave(t, rng, 0.08, 100, 300))
    visible = np.ones(cfg.frames, dtype=bool)
    if item.late_start:
        enter = min(int(rng.uniform(1.1, 2.5) * cfg.annotate_every), cfg.frames // 2)
        slide = max(1, min(15, enter // 2))
        visible[: enter - slide] = False
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        ramp = np.clip((enter - t) / slide, 0.0, 1.0)  # 1 before entering -> 0 once in place
        cx = cx + side * ramp * (0.5 * w + 0.6 * scale * product_hw[1])
    back = np.zeros(cfg.frames, dtype=bool)
    if item.back_turn:
        start = int(rng.uniform(0.4, 0.6) * cfg.frames)
        back[start : start + int(rng.uniform(0.1, 0.2) * cfg.frames)] = True
    gain = 1.0 + _wave(t, rng, 0.15, 80, 300)
    mx, my = margins
    ox = np.round(mx + _wave(t, rng, mx * 0.95, 150, 500)).astype(int)
    oy = np.round(my + _wave(t, rng, my * 0.95, 150, 500)).astype(int)
    return Script(scale, cx, cy, visible, back, gain, ox, oy)


def _background(
    cfg: SyntheticConfig, margins: tuple[int, int], racks: list[Garment], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A cluttered room canvas larger than the frame (crops of it drift), with distractors hanging in it."""
    mx, my = margins
    h, w = cfg.height + 2 * my, cfg.width + 2 * mx
    low = rng.integers(40, 220, size=(max(2, h // 48), max(2, w // 48), 3)).astype(np.uint8)
    canvas = cv2.resize(cv2.GaussianBlur(low, (3, 3), 0), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(18, 32))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.uniform(0.03, 0.25) * w) + 2
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, -1)
        elif kind == 1:
            cv2.circle(canvas, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        else:
            end = (x + int(rng.integers(-size, size)), y + int(rng.integers(-size, size)))
            cv2.line(canvas, (x, y), end, colour, max(1, size // 12), cv2.LINE_AA)
    labels = np.zeros((h, w), np.uint8)
    for j, garment in enumerate(racks):
        layer = garment_layer(garment, RACK_LABEL + j, back=False)
        x1, y1, x2, y2 = layers_bounds([layer])
        scale = rng.uniform(0.22, 0.4) * cfg.height / (y2 - y1)
        # Hang them at the sides, so the host covers them only now and then.
        px = (mx + rng.uniform(0.05, 0.3) * cfg.width) if j == 0 else (mx + rng.uniform(0.7, 0.95) * cfg.width)
        py = my + rng.uniform(0.08, 0.4) * cfg.height
        view = View(scale, px - scale * (x1 + x2) / 2, py - scale * y1)
        hook = (int(px), int(py))
        cv2.line(
            canvas, (hook[0], hook[1] - max(2, int(0.02 * cfg.height))), hook, (40, 40, 40), max(1, cfg.width // 200)
        )
        draw_layers(canvas, labels, [layer], view)
    return canvas, labels


@dataclass
class Sprite:
    """The host drawn once at `scale` (px per body unit); (x0, y0) is the body point of its top-left pixel."""

    rgb: np.ndarray
    labels: np.ndarray
    scale: float
    x0: float
    y0: float


def _sprite(layers: list[Layer], window: tuple[float, float, float, float], scale: float) -> Sprite:
    x0, y0, x1, y1 = window
    w, h = max(1, int(np.ceil((x1 - x0) * scale))), max(1, int(np.ceil((y1 - y0) * scale)))
    rgb, labels = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)
    draw_layers(rgb, labels, layers, View(scale, -x0 * scale, -y0 * scale))
    return Sprite(rgb, labels, scale, x0, y0)


class _Resized:
    """Cache of resized sprites keyed by output height (the scale moves slowly, so neighbouring frames share)."""

    def __init__(self, sprite: Sprite) -> None:
        self.sprite = sprite
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        self.order: list[int] = []

    def get(self, scale: float) -> tuple[np.ndarray, np.ndarray, float]:
        sp = self.sprite
        # Sizes on a 0.4% geometric grid: a zoom step that small is invisible, and neighbours share a resize.
        step = round(np.log(scale / sp.scale) / np.log(1.004))
        out_h = max(1, round(sp.rgb.shape[0] * 1.004**step))
        if out_h not in self.cache:
            out_w = max(1, round(sp.rgb.shape[1] * out_h / sp.rgb.shape[0]))
            rgb = cv2.resize(sp.rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
            labels = cv2.resize(sp.labels, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
            self.cache[out_h] = (rgb, labels, out_h / sp.rgb.shape[0] * sp.scale)
            self.order.append(out_h)
            if len(self.order) > 6:
                del self.cache[self.order.pop(0)]
        return self.cache[out_h]


def _sprite_window(
    script: Script, centre: tuple[float, float], bounds: tuple[float, float, float, float], cfg: SyntheticConfig
) -> tuple[float, float, float, float]:
    """The part of the figure (body frame) that some frame shows: drawing only it keeps the sprite small."""
    s, vis = script.scale[script.visible], script.visible
    tx, ty = script.cx[vis] - centre[0] * s, script.cy[vis] - centre[1] * s
    pad = 4.0 / s  # a few pixels for the rounding of the cached sprite sizes
    x0 = max(bounds[0], float(np.min(-tx / s - pad)))
    x1 = min(bounds[2], float(np.max((cfg.width - tx) / s + pad)))
    y0 = max(bounds[1], float(np.min(-ty / s - pad)))
    y1 = min(bounds[3], float(np.max((cfg.height - ty) / s + pad)))
    if x1 <= x0 or y1 <= y0:  # never on screen: keep a tiny sprite rather than fail
        return bounds[0], bounds[1], bounds[0] + 0.01, bounds[1] + 0.01
    return x0, y0, x1, y1


def _paste(frame: np.ndarray, labels: np.ndarray | None, rgb: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Copy the sprite's drawn pixels (mask > 0) to frame[y:, x:], clipped to the frame (in place)."""
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + rgb.shape[1], fw), min(y + rgb.shape[0], fh)
    if x1 <= x0 or y1 <= y0:
        return
    src = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    # cv2.copyTo writes through the numpy view; np.copyto(where=...) was ~50x slower here.
    cv2.copyTo(rgb[src], mask[src], frame[y0:y1, x0:x1])
    if labels is not None:
        cv2.copyTo(mask[src], mask[src], labels[y0:y1, x0:x1])


def _blobs(cfg: SyntheticConfig, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]]:
    """A few shapes that move across the scene on their own (start, velocity px/frame, radius, colour)."""
    out = []
    for _ in range(int(rng.integers(2, 5))):
        start = rng.uniform([0, 0], [cfg.width, cfg.height])
        velocity = rng.uniform(-1, 1, size=2) * cfg.width / 150
        radius = int(rng.uniform(0.03, 0.08) * cfg.width) + 1
        out.append((start, velocity, radius, tuple(int(c) for c in rng.integers(0, 256, 3))))
    return out


def _draw_blobs(frame: np.ndarray, labels: np.ndarray | None, blobs: list, t: int) -> None:
    h, w = frame.shape[:2]
    for start, velocity, radius, colour in blobs:
        span = np.array([w + 2 * radius, h + 2 * radius])
        x, y = ((start + velocity * t) % span - radius).astype(int)
        cv2.circle(frame, (int(x), int(y)), radius, colour, -1)
        if labels is not None:  # a blob in front of a hanging distractor hides that part of it
            cv2.circle(labels, (int(x), int(y)), radius, 0, -1)


def _frame_annotations(
    labels: np.ndarray, garments: dict[int, Garment], host: set[int], back: bool, held: bool
) -> list[dict]:
    min_pixels = max(12, labels.size // 1500)
    anns = []
    for label, garment in garments.items():
        box = visible_box(labels, label, min_pixels)
        if box is not None:
            on_host = label in host
            anns.append(annotation(garment, box, int(back and on_host), int(on_host and not held)))
    return anns


def render_video(item: ItemSpec, cfg: SyntheticConfig, path: Path, rng: np.random.Generator) -> dict:
    """Write the item's clip to `path` (MPEG-4 Part 2, 'mp4v') and return its annotation.

    Args:
        item: the item; its pieces are worn (or held) by the host, with 0-2 distractors.
        cfg: frame size, frame count, fps, annotated frames.
        path: the .mp4 to write.
        rng: the clip's generator.

    Returns:
        {"video_id": item_id, "frames": [{"frame_index": t, "annotations": [...]}, ...]} for the annotated frames.
    """
    garments = list(item.pieces)
    spare = item.num_distractors
    if not item.held and spare > 0 and item.region in ("upper", "lower"):
        garments.append(random_distractor(rng, LOWER if item.region == "upper" else SET_TOPS))  # worn with it
        spare -= 1
    racks = [random_distractor(rng) for _ in range(spare)]
    px0, py0, px1, py1 = layers_bounds(figure_layers(list(item.pieces), False, item.skin, False))
    # A held garment hangs from two hands at its top corners.
    hands = [(px0 + 0.2 * (px1 - px0), py0 + 0.01), (px1 - 0.2 * (px1 - px0), py0 + 0.01)] if item.held else None
    layers = {back: figure_layers(garments, not item.held, item.skin, back, hands) for back in (False, True)}
    margins = (cfg.width // 10 + 1, cfg.height // 16 + 1)
    script = make_script(item, (py1 - py0, px1 - px0), cfg, margins, rng)
    centre = ((px0 + px1) / 2, (py0 + py1) / 2)
    bounds = layers_bounds(layers[False] + layers[True])
    window = _sprite_window(script, centre, bounds, cfg)
    s_ref = float(script.scale[script.visible].max()) if script.visible.any() else 1.0
    sprites = {
        back: _Resized(_sprite(layers[back], window, s_ref)) for back in (False, True) if script.back.any() or not back
    }
    canvas, canvas_labels = _background(cfg, margins, racks, rng)
    blobs = _blobs(cfg, rng)
    named = {2 + i: g for i, g in enumerate(garments)} | {RACK_LABEL + j: g for j, g in enumerate(racks)}
    host = set(range(2, 2 + len(garments)))
    annotated = set(annotated_frame_indices(cfg.frames, cfg.annotate_every))

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (cfg.width, cfg.height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cv2.VideoWriter cannot open an 'mp4v' (MPEG-4 Part 2) writer")
    frames = []
    try:
        for t in range(cfg.frames):
            ox, oy = int(script.ox[t]), int(script.oy[t])
            frame = canvas[oy : oy + cfg.height, ox : ox + cfg.width].copy()
            labels = canvas_labels[oy : oy + cfg.height, ox : ox + cfg.width].copy() if t in annotated else None
            _draw_blobs(frame, labels, blobs, t)
            if script.visible[t]:
                rgb, mask, s = sprites[bool(script.back[t])].get(float(script.scale[t]))
                x = round(script.cx[t] + (window[0] - centre[0]) * s)
                y = round(script.cy[t] + (window[1] - centre[1]) * s)
                _paste(frame, labels, rgb, mask, int(x), int(y))
            cv2.convertScaleAbs(frame, dst=frame, alpha=float(script.gain[t]))
            writer.write(frame)
            if labels is not None:
                anns = _frame_annotations(labels, named, host, bool(script.back[t]), item.held)
                frames.append({"frame_index": t, "annotations": anns})
    finally:
        writer.release()
    return {"video_id": item.item_id, "frames": frames}
