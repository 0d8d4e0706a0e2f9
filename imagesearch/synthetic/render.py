"""Drawing garments and the person-like figure onto an image, with a label map for exact boxes.

Every drawn layer also writes its id into a uint8 label map, so a garment's box is the bounding box of
the pixels it still shows after everything in front of it was drawn (see `visible_box`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from imagesearch.synthetic.patterns import PatternSpec, render_pattern
from imagesearch.synthetic.shapes import (
    SILHOUETTES,
    ShapeJitter,
    body_polygons,
    garment_details,
    garment_polygons,
    hair_polygon,
)

BODY_LABEL = 1  # label-map value of the figure's skin, hair and shoes (never annotated)
_SHIFT = 4  # fixed-point bits for cv2 polygon coordinates (sub-pixel accurate edges)


@dataclass(frozen=True)
class Garment:
    """One garment of an item or a distractor.

    Attributes:
        category: canonical category.
        pattern: its fabric.
        jitter: item-specific shape changes.
        instance_id: > 0 for a product piece, 0 for a distractor.
    """

    category: str
    pattern: PatternSpec
    jitter: ShapeJitter
    instance_id: int


@dataclass
class Layer:
    """Polygons in the body frame filled with a pattern (garment) or a flat colour (skin, hair)."""

    polys: list[np.ndarray]
    label: int
    pattern: PatternSpec | None = None
    colour: tuple[int, int, int] = (0, 0, 0)
    details: list[tuple[np.ndarray, float]] = field(default_factory=list)
    mirror: bool = False  # back view: the pattern seen from behind


@dataclass(frozen=True)
class View:
    """Body frame -> pixels: px = x * scale + tx, py = y * scale + ty (pixel centres at +0.5)."""

    scale: float
    tx: float
    ty: float

    def to_px(self, pts: np.ndarray) -> np.ndarray:
        return pts * self.scale + np.array([self.tx, self.ty])


def fit_view(window: tuple[float, float, float, float], width: int, height: int, fill: float) -> View:
    """The view that centres a body-frame window (x1, y1, x2, y2) in a width x height image, filling `fill` of it."""
    wx1, wy1, wx2, wy2 = window
    scale = fill * min(width / (wx2 - wx1), height / (wy2 - wy1))
    return View(scale, width / 2 - scale * (wx1 + wx2) / 2, height / 2 - scale * (wy1 + wy2) / 2)


def garment_layer(garment: Garment, label: int, back: bool) -> Layer:
    """The drawable layer of a garment (front or back view)."""
    return Layer(
        polys=garment_polygons(garment.category, garment.jitter, back),
        label=label,
        pattern=garment.pattern,
        details=garment_details(garment.category, garment.jitter, back),
        mirror=back,
    )


def figure_layers(
    garments: list[Garment],
    body: bool,
    skin: tuple[int, int, int],
    back: bool,
    hands: list[tuple[float, float]] | None = None,
) -> list[Layer]:
    """Layers of a figure in drawing order; garment i gets label 2 + i.

    Args:
        garments: what is shown, in any order (drawn by each silhouette's z, lower body first).
        body: draw the person-like figure (worn, display 1) or not (shown alone, display 0).
        skin: BGR skin colour.
        back: back view.
        hands: body-frame points where hands hold the garments up (a held garment, no body).
    """
    layers: list[Layer] = []
    if body:
        parts = body_polygons()
        layers.append(Layer(parts["skin"], BODY_LABEL, colour=skin))
        layers.append(Layer(parts["dark"] + [hair_polygon(back)], BODY_LABEL, colour=(30, 30, 38)))
    order = sorted(range(len(garments)), key=lambda i: SILHOUETTES[garments[i].category].z)
    layers += [garment_layer(garments[i], 2 + i, back) for i in order]
    if hands:
        t = np.linspace(0, 2 * np.pi, 16)
        circle = np.stack([0.022 * np.cos(t), 0.026 * np.sin(t)], 1)
        layers.append(Layer([circle + np.array(point) for point in hands], BODY_LABEL, colour=skin))
    return layers


def layers_bounds(layers: list[Layer]) -> tuple[float, float, float, float]:
    """Body-frame bounding box (x1, y1, x2, y2) of all polygons of the layers."""
    pts = np.concatenate([p for layer in layers for p in layer.polys])
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def draw_layers(canvas: np.ndarray, labels: np.ndarray, layers: list[Layer], view: View) -> None:
    """Draw layers in order onto a BGR canvas, writing their ids into the label map (both in place).

    Args:
        canvas: (H, W, 3) uint8 BGR.
        labels: (H, W) uint8 label map.
        layers: drawn first to last (later layers cover earlier ones).
        view: body frame -> pixels.
    """
    for layer in layers:
        _draw_layer(canvas, labels, layer, view)


def _draw_layer(canvas: np.ndarray, labels: np.ndarray, layer: Layer, view: View) -> None:
    h, w = labels.shape
    polys = [view.to_px(p) - 0.5 for p in layer.polys]  # cv2 puts integer coordinates at pixel centres
    pts = np.concatenate(polys)
    x0, y0 = max(int(np.floor(pts[:, 0].min())), 0), max(int(np.floor(pts[:, 1].min())), 0)
    x1, y1 = min(int(np.ceil(pts[:, 0].max())) + 1, w), min(int(np.ceil(pts[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for p in polys:  # one call per polygon: a single fillPoly call would punch holes where polygons overlap
        fixed = np.round((p - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    sel = mask.astype(bool)
    region = canvas[y0:y1, x0:x1]
    if layer.pattern is None:
        region[sel] = layer.colour
    else:
        u = ((np.arange(x0, x1) + 0.5 - view.tx) / view.scale)[None, :]
        v = ((np.arange(y0, y1) + 0.5 - view.ty) / view.scale)[:, None]
        shade = 1.0 - 0.22 * np.clip((u / 0.17) ** 2, 0.0, 1.0)  # a round body: darker towards the sides
        tex = render_pattern(-u if layer.mirror else u, v, layer.pattern, 1.0 / view.scale, shade)
        np.copyto(region, tex, where=sel[..., None])
        dark = tuple(int(c * 0.55) for c in layer.pattern.colours[0])
        for line, thick in layer.details:
            px = np.round((view.to_px(line) - 0.5) * (1 << _SHIFT)).astype(np.int32)
            cv2.polylines(canvas, [px], False, dark, max(1, round(thick * view.scale)), cv2.LINE_8, _SHIFT)
    labels[y0:y1, x0:x1][sel] = layer.label


def visible_box(labels: np.ndarray, label: int, min_pixels: int) -> list[int] | None:
    """Tight box [x1, y1, x2, y2] (x2, y2 exclusive) of the pixels showing `label`, or None if fewer than min_pixels.

    Args:
        labels: (H, W) label map.
        label: the layer id.
        min_pixels: below this many visible pixels the garment counts as not shown.
    """
    ys, xs = np.nonzero(labels == label)
    if ys.size < max(min_pixels, 1):
        return None
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return [x1, y1, x2, y2]


def annotation(garment: Garment, box: list[int], viewpoint: int, display: int) -> dict[str, object]:
    """One annotation in the competition's schema and key order (SPEC §1)."""
    return {
        "label": garment.category,
        "viewpoint": viewpoint,
        "display": display,
        "instance_id": garment.instance_id,
        "box": box,
    }


def plain_background(
    height: int, width: int, rng: np.random.Generator, avoid: list[tuple[int, int, int]]
) -> np.ndarray:
    """A plain studio background with a gentle vertical gradient that stands out from the garments' colours.

    Args:
        height, width: image size.
        rng: the image's generator.
        avoid: BGR colours the background must differ from (a photographer puts a white shirt on a darker
            backdrop), under the shading and lighting that the garments get.

    Returns:
        (H, W, 3) uint8 BGR.
    """
    # (K, 3 shades, 3 channels): each colour darkened by the side shading or brightened by the lighting
    shaded = np.asarray(avoid, dtype=np.float64).reshape(-1, 1, 3) * np.array([0.75, 1.0, 1.1])[:, None]
    best, best_gap = None, -1.0
    for _ in range(20):
        base = rng.uniform(60, 250) + rng.uniform(-15, 15, size=3)
        gap = float(np.abs(shaded - base).max(axis=2).min()) if len(avoid) else 255.0
        if gap > best_gap:
            best, best_gap = base, gap
        if gap >= 50:
            break
    tint = rng.uniform(-12, 12, size=3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = best[None, None, :] + tint[None, None, :] * ramp
    return np.broadcast_to(np.clip(img, 0, 255).astype(np.uint8), (height, width, 3)).copy()
