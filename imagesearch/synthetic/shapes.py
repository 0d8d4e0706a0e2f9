"""Garment silhouettes for the 23 categories, as polygons in a body frame.

Body frame: x to the right of the body's centre line, y down from the top of the head, unit = the
figure's height (feet at y ~= 0.97). Every garment and the person-like figure are drawn in this frame,
so a garment keeps its shape and pattern when it is worn, shown alone, or scaled into a video frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imagesearch.data.labels import CATEGORIES

# Body landmarks (y) and half-widths (x) in the body frame.
NECK_Y, SHOULDER_Y, ARMPIT_Y, WAIST_Y, HIP_Y, CROTCH_Y = 0.135, 0.165, 0.24, 0.38, 0.47, 0.53
SHOULDER_JOINT = np.array([0.1, 0.175])
WRIST = np.array([0.15, 0.49])
LEG_X = 0.05  # centre line of each leg

Polygon = np.ndarray  # (N, 2) float, body frame


@dataclass(frozen=True)
class Silhouette:
    """The shape of one category.

    Attributes:
        neckline: "crew", "v" (open front / waistcoat), "strap_thin", "strap_wide", "sleeveless" or
            "none" (a bottom: no upper-body part).
        sleeve: sleeve length as a fraction of the arm (0 none, 0.3 short, 1 long).
        wide_sleeve: flared sleeves (the 古风 robe).
        hem_y: hem of the upper-body part (a top, a dress, a coat).
        flare: extra half-width per unit of length below the waist (A-line).
        bottom: None, "skirt" or "legs" (a part below the waist).
        bottom_hem: hem of the bottom part.
        details: extra lines: "collar", "buttons", "open" (open front), "sash", "bib".
        z: drawing order when worn together (lower first).
    """

    neckline: str
    sleeve: float = 0.0
    wide_sleeve: bool = False
    hem_y: float = 0.0
    flare: float = 0.0
    bottom: str | None = None
    bottom_hem: float = 0.0
    details: tuple[str, ...] = ()
    z: int = 2

    @property
    def region(self) -> str:
        """Which part of the body the garment covers: "upper", "lower" or "full"."""
        if self.neckline == "none":
            return "lower"
        return "full" if self.bottom is not None or self.hem_y >= 0.6 else "upper"


SILHOUETTES: dict[str, Silhouette] = {
    "短袖上衣": Silhouette("crew", 0.3, hem_y=0.49, flare=0.05),
    "长袖上衣": Silhouette("crew", 1.0, hem_y=0.5, flare=0.05),
    "短袖衬衫": Silhouette("crew", 0.3, hem_y=0.51, flare=0.04, details=("collar", "buttons")),
    "长袖衬衫": Silhouette("crew", 1.0, hem_y=0.52, flare=0.04, details=("collar", "buttons")),
    "背心上衣": Silhouette("strap_wide", hem_y=0.48, flare=0.05),
    "吊带上衣": Silhouette("strap_thin", hem_y=0.47, flare=0.08),
    "无袖上衣": Silhouette("sleeveless", hem_y=0.49, flare=0.06),
    "短外套": Silhouette("v", 1.0, hem_y=0.52, flare=0.1, details=("open",), z=4),
    "短马甲": Silhouette("v", 0.0, hem_y=0.48, flare=0.05, details=("open",), z=4),
    "长袖连衣裙": Silhouette("crew", 1.0, hem_y=0.82, flare=0.22),
    "短袖连衣裙": Silhouette("crew", 0.3, hem_y=0.72, flare=0.3),
    "无袖连衣裙": Silhouette("sleeveless", hem_y=0.76, flare=0.25),
    "长马甲": Silhouette("v", 0.0, hem_y=0.78, flare=0.08, details=("open",), z=4),
    "长外套": Silhouette("v", 1.0, hem_y=0.82, flare=0.12, details=("open",), z=4),
    "连体衣": Silhouette("crew", 0.3, hem_y=0.47, flare=0.0, bottom="legs", bottom_hem=0.95),
    "古风": Silhouette("crew", 1.0, wide_sleeve=True, hem_y=0.95, flare=0.32, details=("sash",)),
    "短裙": Silhouette("none", bottom="skirt", bottom_hem=0.57, flare=0.4, z=1),
    "中等半身裙": Silhouette("none", bottom="skirt", bottom_hem=0.72, flare=0.3, z=1),
    "长半身裙": Silhouette("none", bottom="skirt", bottom_hem=0.93, flare=0.22, z=1),
    "短裤": Silhouette("none", bottom="legs", bottom_hem=0.6, z=1),
    "中裤": Silhouette("none", bottom="legs", bottom_hem=0.78, z=1),
    "长裤": Silhouette("none", bottom="legs", bottom_hem=0.95, z=1),
    "背带裤": Silhouette("none", bottom="legs", bottom_hem=0.95, details=("bib",), z=3),
}

UPPER = tuple(c for c in CATEGORIES if SILHOUETTES[c].region == "upper")
LOWER = tuple(c for c in CATEGORIES if SILHOUETTES[c].region == "lower")
# Tops that make a two-piece set with a bottom (outerwear over nothing would look odd).
SET_TOPS = tuple(c for c in UPPER if SILHOUETTES[c].z == 2)


@dataclass(frozen=True)
class ShapeJitter:
    """Item-specific changes to a category's silhouette: width factor and hem offsets (body units)."""

    ease: float = 1.0
    length: float = 0.0
    flare: float = 1.0


def _mirror(right: list[tuple[float, float]]) -> Polygon:
    """Close a right half (listed top to bottom) with its mirror image into one polygon."""
    pts = np.array(right, dtype=np.float64)
    left = pts[::-1].copy()
    left[:, 0] *= -1
    return np.concatenate([pts, left], axis=0)


def _quad_along(a: np.ndarray, b: np.ndarray, wa: float, wb: float) -> Polygon:
    """A quadrilateral of half-width wa at a and wb at b, around the segment a -> b."""
    d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
    n = np.array([-d[1], d[0]])
    return np.stack([a + n * wa, b + n * wb, b - n * wb, a - n * wa])


def _sleeves(sil: Silhouette, ease: float) -> list[Polygon]:
    if sil.sleeve <= 0:
        return []
    end = SHOULDER_JOINT + sil.sleeve * (WRIST - SHOULDER_JOINT)
    w0 = 0.042 * ease
    w1 = (0.042 + 0.05 * sil.sleeve) if sil.wide_sleeve else (0.04 - 0.01 * sil.sleeve) * ease
    right = _quad_along(SHOULDER_JOINT, end, w0, w1)
    left = right.copy()
    left[:, 0] *= -1
    return [right, left]


def _torso(sil: Silhouette, jit: ShapeJitter, back: bool) -> list[Polygon]:
    e = jit.ease
    hem = sil.hem_y + jit.length
    hem_hw = (0.09 + sil.flare * jit.flare * max(hem - WAIST_Y, 0.0)) * e
    lower = [(0.074 * e, WAIST_Y), (hem_hw, hem)] if hem > WAIST_Y + 0.02 else [(hem_hw, hem)]
    if sil.neckline in ("strap_thin", "strap_wide"):
        top = 0.2 if sil.neckline == "strap_wide" else 0.215
        body = _mirror([(0.0, top + 0.01), (0.08 * e, top), (0.088 * e, ARMPIT_Y), *lower])
        strap_w = 0.022 if sil.neckline == "strap_wide" else 0.006
        straps = [_quad_along(np.array([s * 0.06, SHOULDER_Y]), np.array([s * 0.065, top + 0.005]), strap_w, strap_w)
                  for s in (-1, 1)]  # fmt: skip
        return [body, *straps]
    neck_dip = {"crew": 0.16, "v": 0.27, "sleeveless": 0.17}[sil.neckline]
    if back:
        neck_dip = min(neck_dip, 0.15)  # a back view shows a high neckline
    shoulder = 0.085 if sil.neckline == "sleeveless" or (sil.neckline == "v" and sil.sleeve == 0) else 0.108
    right = [(0.0, neck_dip), (0.04, NECK_Y), (shoulder * e, SHOULDER_Y), (0.09 * e, ARMPIT_Y), *lower]
    return [_mirror(right)]


def _bottom(sil: Silhouette, jit: ShapeJitter) -> list[Polygon]:
    e = jit.ease
    hem = sil.bottom_hem + jit.length
    top = WAIST_Y - 0.005
    if sil.bottom == "skirt":
        hem_hw = (0.092 + sil.flare * jit.flare * (hem - HIP_Y)) * e
        return [_mirror([(0.0, top), (0.075 * e, top), (0.094 * e, HIP_Y), (hem_hw, hem)])]
    frac = (hem - CROTCH_Y) / (0.95 - CROTCH_Y)
    leg_hw = (0.048 - 0.012 * frac) * e
    inner = max(LEG_X - leg_hw, 0.004)
    right = [(0.0, top), (0.076 * e, top), (0.094 * e, HIP_Y), (LEG_X + leg_hw, hem), (inner, hem), (0.0, CROTCH_Y)]
    pts = np.array(right)
    left = pts[1:-1][::-1].copy()  # the crotch and waist centre points are shared
    left[:, 0] *= -1
    polys = [np.concatenate([pts, left])]
    if "bib" in sil.details:
        polys.append(_mirror([(0.0, 0.27), (0.056 * e, 0.27), (0.062 * e, top + 0.01)]))
        polys += [_quad_along(np.array([s * 0.045, 0.275]), np.array([s * 0.075, SHOULDER_Y]), 0.011, 0.011)
                  for s in (-1, 1)]  # fmt: skip
    return polys


def garment_polygons(category: str, jitter: ShapeJitter, back: bool = False) -> list[Polygon]:
    """The polygons (body frame) whose union is the garment's silhouette.

    Args:
        category: one of the 23 canonical categories.
        jitter: item-specific width and length changes.
        back: a back view (higher neckline).

    Returns:
        A list of (N, 2) float arrays in body units.
    """
    sil = SILHOUETTES[category]
    polys: list[Polygon] = []
    if sil.neckline != "none":
        polys += _torso(sil, jitter, back) + _sleeves(sil, jitter.ease)
    if sil.bottom is not None:
        polys += _bottom(sil, jitter)
    return polys


def garment_details(category: str, jitter: ShapeJitter, back: bool = False) -> list[tuple[Polygon, float]]:
    """Seams, collars, buttons and openings to draw over the fill: (polyline, thickness in body units).

    A back view has no front details. Every line lies inside the silhouette, so boxes are unchanged.
    """
    sil = SILHOUETTES[category]
    if back:
        return [(np.array([[0.0, 0.16], [0.0, sil.hem_y + jitter.length - 0.01]]), 0.002)] if sil.hem_y else []
    hem = sil.hem_y + jitter.length - 0.01
    lines: list[tuple[Polygon, float]] = []
    if "collar" in sil.details:
        lines += [(np.array([[s * 0.038, 0.14], [s * 0.018, 0.19], [0.0, 0.165]]), 0.004) for s in (-1, 1)]
    if "buttons" in sil.details:
        lines += [(np.array([[0.0, y], [0.0, y + 0.004]]), 0.008) for y in np.arange(0.2, hem, 0.05)]
    if "open" in sil.details:
        lines.append((np.array([[0.0, 0.27], [0.0, hem]]), 0.006))
        lines += [(np.array([[s * 0.04, 0.14], [s * 0.03, 0.22], [0.0, 0.27]]), 0.005) for s in (-1, 1)]
    if "sash" in sil.details:
        lines.append((np.array([[-0.058 * jitter.ease, WAIST_Y - 0.02], [0.058 * jitter.ease, WAIST_Y - 0.02]]), 0.02))
        lines += [(np.array([[s * 0.04, 0.14], [-s * 0.03, 0.3]]), 0.006) for s in (-1, 1)]
    if sil.bottom is not None and sil.neckline == "none":
        lines.append((np.array([[-0.07, WAIST_Y + 0.008], [0.07, WAIST_Y + 0.008]]), 0.006))  # waistband
    return lines


def body_polygons() -> dict[str, list[Polygon]]:
    """The person-like figure: skin parts ("skin") and hair/shoes ("dark"), body frame."""
    head = np.stack(
        [0.055 * np.cos(np.linspace(0, 2 * np.pi, 24)), 0.068 + 0.066 * np.sin(np.linspace(0, 2 * np.pi, 24))], 1
    )
    neck = _mirror([(0.0, 0.12), (0.028, 0.12), (0.032, 0.17)])
    torso = _mirror(
        [(0.0, 0.15), (0.1, SHOULDER_Y), (0.085, ARMPIT_Y), (0.07, WAIST_Y), (0.09, HIP_Y), (0.0, CROTCH_Y)]
    )
    hand = SHOULDER_JOINT + 1.08 * (WRIST - SHOULDER_JOINT)
    arms = [_quad_along(SHOULDER_JOINT, hand, 0.03, 0.022)]
    legs = [_quad_along(np.array([LEG_X, HIP_Y]), np.array([LEG_X + 0.005, 0.95]), 0.045, 0.025)]
    for part in (arms, legs):
        mirrored = part[0].copy()
        mirrored[:, 0] *= -1
        part.append(mirrored)
    shoes = [_mirror([(0.0, 0.94), (0.03, 0.94), (0.035, 0.975)]) + np.array([s * LEG_X, 0.0]) for s in (-1, 1)]
    return {"skin": [head, neck, torso, *arms, *legs], "dark": shoes}


def hair_polygon(back: bool) -> Polygon:
    """Hair: a cap on top of the head from the front, the whole head (and some length) from the back."""
    t = np.linspace(np.pi, 2 * np.pi, 16)
    cap = np.stack([0.058 * np.cos(t), 0.066 + 0.07 * np.sin(t)], 1)
    low = 0.2 if back else 0.07
    return np.concatenate([cap, [[0.06, low], [-0.06, low]]])
