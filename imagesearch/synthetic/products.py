"""Product (gallery) images: the item alone or worn, front or back, on a plain studio background."""

from __future__ import annotations

import cv2
import numpy as np

from imagesearch.synthetic.items import ItemSpec, random_distractor
from imagesearch.synthetic.render import (
    Garment,
    annotation,
    draw_layers,
    figure_layers,
    fit_view,
    layers_bounds,
    plain_background,
    visible_box,
)
from imagesearch.synthetic.shapes import LOWER, SET_TOPS, SILHOUETTES


def _shown_pieces(item: ItemSpec, k: int, rng: np.random.Generator) -> list[Garment]:
    """Image 0 shows every piece (so each instance id is in the gallery); later ones a set together or apart."""
    if k == 0 or len(item.pieces) == 1:
        return list(item.pieces)
    pick = int(rng.choice(3, p=[0.4, 0.3, 0.3]))
    return list(item.pieces) if pick == 0 else [item.pieces[pick - 1]]


def _complement(shown: list[Garment], rng: np.random.Generator) -> Garment | None:
    """A garment the model wears with the product (a distractor, instance_id 0), as in real product photos."""
    regions = {SILHOUETTES[g.category].region for g in shown}
    if regions == {"upper"}:
        return random_distractor(rng, LOWER)
    if regions == {"lower"}:
        return random_distractor(rng, SET_TOPS)
    return None


def render_product_image(item: ItemSpec, k: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Draw product image k of an item.

    Args:
        item: the item.
        k: image index (image 0 shows every piece, front view).
        size: side of the square image in pixels.
        rng: the image's generator.

    Returns:
        (size, size, 3) uint8 BGR image, and its annotations (competition schema, product pieces first).
    """
    shown = _shown_pieces(item, k, rng)
    display = int(rng.uniform() < 0.5)
    viewpoint = int(k > 0 and rng.uniform() < 0.3)
    garments = list(shown)
    extra = _complement(shown, rng) if display == 1 and rng.uniform() < 0.5 else None
    if extra is not None:
        garments.append(extra)
    layers = figure_layers(garments, body=display == 1, skin=item.skin, back=viewpoint == 1)
    product_layers = [layer for layer in layers if 2 <= layer.label < 2 + len(shown)]
    x1, y1, x2, y2 = layers_bounds(product_layers)
    # A worn product is shown with more of the person around it; both are framed a little off-centre.
    margin = rng.uniform(1.25, 1.9) if display == 1 else rng.uniform(1.1, 1.35)
    side = max(x2 - x1, y2 - y1) * margin
    cx = (x1 + x2) / 2 + rng.uniform(-0.08, 0.08) * side
    cy = (y1 + y2) / 2 + rng.uniform(-0.08, 0.08) * side
    view = fit_view((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), size, size, fill=1.0)

    image = plain_background(size, size, rng, [c for g in shown for c in g.pattern.colours])
    labels = np.zeros((size, size), np.uint8)
    draw_layers(image, labels, layers, view)
    image = cv2.convertScaleAbs(image, alpha=float(rng.uniform(0.9, 1.1)))  # studio lighting varies per shot

    anns = []
    for i, garment in enumerate(garments):
        box = visible_box(labels, 2 + i, min_pixels=size * size // 1000)
        if box is not None:
            anns.append(annotation(garment, box, viewpoint, display))
    return image, anns
