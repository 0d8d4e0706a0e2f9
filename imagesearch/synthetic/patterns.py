"""Item colours and fabric patterns (stripes, checks, dots, gradient, solid) as functions of body coordinates.

A pattern is evaluated at the body-frame coordinates of each pixel, so the same garment shows the same
pattern in an 800x800 product image and in a small, moving video sprite (only sampled more coarsely).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Named colours (RGB, as people name them) with the Chinese word used in titles and ASR lines.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "红色": (200, 30, 40),
    "酒红色": (120, 20, 45),
    "粉色": (240, 150, 180),
    "橙色": (240, 130, 30),
    "黄色": (235, 205, 50),
    "绿色": (45, 145, 65),
    "墨绿色": (30, 80, 50),
    "蓝色": (40, 90, 200),
    "藏青色": (25, 35, 85),
    "天蓝色": (125, 180, 230),
    "紫色": (120, 60, 160),
    "白色": (240, 240, 232),
    "黑色": (28, 28, 32),
    "灰色": (128, 128, 132),
    "卡其色": (190, 160, 110),
    "咖啡色": (110, 70, 40),
}
COLOUR_WORDS: tuple[str, ...] = tuple(NAMED_COLOURS)
PATTERN_KINDS: tuple[str, ...] = ("solid", "stripes", "checks", "dots", "gradient")
PATTERN_WORDS: dict[str, str] = {
    "solid": "纯色",
    "stripes": "条纹",
    "checks": "格子",
    "dots": "波点",
    "gradient": "渐变",
}


@dataclass(frozen=True)
class PatternSpec:
    """A fabric pattern.

    Attributes:
        kind: one of PATTERN_KINDS.
        colours: two BGR colours, the dominant (ground) colour first.
        colour_name: the word for the dominant colour (a key of NAMED_COLOURS).
        period: repeat length in body units (figure height = 1).
        angle: direction of the pattern in radians.
        duty: fraction of a period covered by the second colour (stripe width, dot diameter).
        phase: offsets of the pattern in periods (u, v).
    """

    kind: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    colour_name: str
    period: float
    angle: float
    duty: float
    phase: tuple[float, float] = (0.0, 0.0)


def jittered_bgr(name: str, rng: np.random.Generator, amount: int = 14) -> tuple[int, int, int]:
    """The named colour, moved by up to `amount` per channel, as a BGR tuple."""
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in NAMED_COLOURS[name])
    return (b, g, r)


def random_pattern(
    rng: np.random.Generator, colour_name: str | None = None, avoid_kind: str | None = None
) -> PatternSpec:
    """Draw an item-specific pattern: kind, two colours, frequency, angle, duty and phase.

    Args:
        rng: the item's generator.
        colour_name: force the dominant colour (items made to share a colour).
        avoid_kind: a kind not to use (so items sharing a colour differ in texture).
    """
    kinds = [k for k in PATTERN_KINDS if k != avoid_kind]
    kind = str(rng.choice(kinds, p=_kind_weights(kinds)))
    name = colour_name if colour_name is not None else str(rng.choice(COLOUR_WORDS))
    second = str(rng.choice([c for c in COLOUR_WORDS if c != name]))
    period = {"stripes": (0.012, 0.05), "checks": (0.02, 0.06), "dots": (0.015, 0.045), "gradient": (0.25, 0.7)}
    lo, hi = period.get(kind, (0.004, 0.008))  # "solid": a fine rib
    duty_lo, duty_hi = (0.25, 0.45) if kind != "dots" else (0.3, 0.6)
    return PatternSpec(
        kind=kind,
        colours=(jittered_bgr(name, rng), jittered_bgr(second, rng)),
        colour_name=name,
        period=float(rng.uniform(lo, hi)),
        angle=float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]) + rng.uniform(-0.15, 0.15)),
        duty=float(rng.uniform(duty_lo, duty_hi)),
        phase=(float(rng.uniform()), float(rng.uniform())),
    )


def _kind_weights(kinds: list[str]) -> np.ndarray:
    w = np.array([0.6 if k == "solid" else 1.0 for k in kinds])
    return w / w.sum()


def _soft_band(dist: np.ndarray, half: float, px: float) -> np.ndarray:
    """1 inside a band of half-width `half` around 0, 0 outside, with a one-pixel linear edge (anti-aliasing)."""
    return np.clip((half - dist) / px + 0.5, 0.0, 1.0)


def _stripes(a: np.ndarray, spec: PatternSpec, px: float, phase: float) -> np.ndarray:
    if spec.period < 2.0 * px:  # finer than the pixel grid: its average colour, not aliasing moire
        return np.full_like(a, spec.duty)
    f = a / spec.period + phase
    dist = np.abs(f - np.floor(f) - 0.5) * spec.period
    return _soft_band(dist, spec.duty * spec.period / 2, px)


def pattern_weights(u: np.ndarray, v: np.ndarray, spec: PatternSpec, px: float) -> np.ndarray:
    """Weight of the second colour at body coordinates (u, v).

    Args:
        u: (1, W) or (H, W) body x coordinates (mirrored for a back view by the caller).
        v: (H, 1) or (H, W) body y coordinates.
        spec: the pattern.
        px: size of one pixel in body units (for anti-aliasing).

    Returns:
        (H, W) float32 weights in [0, 1].
    """
    c, s = np.cos(spec.angle), np.sin(spec.angle)
    a = u * c + v * s
    b = -u * s + v * c
    if spec.kind == "stripes":
        m = _stripes(a, spec, px, spec.phase[0])
    elif spec.kind == "checks":
        m = 0.5 * (_stripes(a, spec, px, spec.phase[0]) + _stripes(b, spec, px, spec.phase[1]))
    elif spec.kind == "dots":
        if spec.period < 3.0 * px:
            m = np.full(np.broadcast_shapes(a.shape, b.shape), np.pi * spec.duty**2 / 4)
        else:
            fb = b / spec.period + spec.phase[1]
            fa = a / spec.period + spec.phase[0] + 0.5 * (np.floor(fb) % 2)  # offset rows, like printed dots
            dist = np.hypot(fa - np.round(fa), fb - np.round(fb)) * spec.period
            m = _soft_band(dist, spec.duty * spec.period / 2, px)
    elif spec.kind == "gradient":
        m = 0.5 - 0.5 * np.cos(2 * np.pi * (a / spec.period + spec.phase[0]))
    else:  # solid with a faint rib so the fabric is not flat
        m = 0.06 * (0.5 + 0.5 * np.sin(2 * np.pi * (a / spec.period + spec.phase[0]))) if spec.period > 2 * px else 0.03
    return np.broadcast_to(np.asarray(m, dtype=np.float32), np.broadcast_shapes(np.shape(u), np.shape(v)))


def render_pattern(u: np.ndarray, v: np.ndarray, spec: PatternSpec, px: float, shade: np.ndarray) -> np.ndarray:
    """The pattern's BGR colours at body coordinates, times a shading factor.

    Args:
        u: (1, W) body x coordinates; v: (H, 1) body y coordinates.
        spec: the pattern.
        px: pixel size in body units.
        shade: (1, W) or (H, W) multiplicative shading.

    Returns:
        (H, W, 3) uint8 BGR.
    """
    m = pattern_weights(u, v, spec, px)[..., None]
    c0 = np.asarray(spec.colours[0], dtype=np.float32)
    c1 = np.asarray(spec.colours[1], dtype=np.float32)
    rgb = (c0 + (c1 - c0) * m) * np.asarray(shade, dtype=np.float32)[..., None]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
