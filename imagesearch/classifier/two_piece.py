"""Two-piece sets (SPEC §1, §3 stages 4 and 7): a top and a bottom sold as one item.

In the annotations a set is an item whose product images hold two instance ids (…01 and …02, but
the digits are never decoded: the ids are read from the records). At inference nothing says which
detections belong together, so `pair_candidates` proposes pairs by a geometric rule: a top-type and
a bottom-type detection of one frame whose boxes sit one above the other, vertically adjacent or
slightly overlapping and horizontally aligned. The matcher searches these pairs against set items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from imagesearch.classifier.merging import GROUP_SEP
from imagesearch.data.labels import CATEGORIES, CATEGORY_INDEX
from imagesearch.data.records import Item

TOP_CATEGORIES: tuple[str, ...] = (
    "短袖上衣", "长袖上衣", "短袖衬衫", "长袖衬衫", "背心上衣", "吊带上衣", "无袖上衣", "短外套", "短马甲",
    "长马甲", "长外套",
)  # fmt: skip
# Dresses, jumpsuits and 古风 cover the whole body: never one half of a pair. Overalls (背带裤) are
# worn over a top, and their bib reaches up over it, so they pair with a top without the overlap limit.
BOTTOM_CATEGORIES: tuple[str, ...] = ("短裙", "中等半身裙", "长半身裙", "短裤", "中裤", "长裤", "背带裤")
BIB_BOTTOMS: tuple[str, ...] = ("背带裤",)


@dataclass
class TwoPieceConfig:
    """The geometric rule for a candidate (top, bottom) pair in one frame.

    Attributes:
        top_categories / bottom_categories: which categories count as a top / a bottom.
        bib_bottoms: bottoms whose box may cover the top entirely (overalls): `max_overlap` is not applied.
        max_gap: largest vertical gap between the top's bottom edge and the bottom's top edge, as a
            fraction of the mean box height of the two.
        max_overlap: largest vertical overlap of the two boxes, as a fraction of the shorter box height
            (tops hang over the waistband, so some overlap is the rule).
        min_x_overlap: smallest horizontal overlap, as a fraction of the narrower box width.
    """

    top_categories: list[str] = field(default_factory=lambda: list(TOP_CATEGORIES))
    bottom_categories: list[str] = field(default_factory=lambda: list(BOTTOM_CATEGORIES))
    bib_bottoms: list[str] = field(default_factory=lambda: list(BIB_BOTTOMS))
    max_gap: float = 0.25
    max_overlap: float = 0.75
    min_x_overlap: float = 0.3


def is_set(item: Item) -> bool:
    """True when the item's product annotations hold at least two instance ids (a two-piece set)."""
    return len(item.instance_ids) >= 2


def set_pieces(item: Item) -> list[int]:
    """The instance ids of an item's pieces, sorted (one id for an ordinary item, none without boxes)."""
    return sorted(item.instance_ids)


def _category_name(category: str | int) -> str:
    if isinstance(category, (int, np.integer)):
        if not 0 <= int(category) < len(CATEGORIES):
            raise ValueError(f"category index {category} is outside 0..{len(CATEGORIES) - 1}")
        return CATEGORIES[int(category)]
    return str(category)


def _has_kind(category: str | int, kind: set[str]) -> bool:
    # A merged group ("短裙+中等半身裙") has a kind when any of its members has it.
    return any(part in kind for part in _category_name(category).split(GROUP_SEP))


def pair_candidates(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    categories: Sequence[str | int],
    cfg: TwoPieceConfig | None = None,
) -> list[tuple[int, int]]:
    """Pairs of detections of one frame that may be the two pieces of a set.

    Args:
        boxes: (M, 4) boxes (x1, y1, x2, y2) in pixels, one frame.
        categories: M category names, merged group names ("a+b") or indices into `CATEGORIES`.
        cfg: the rule's thresholds.

    Returns:
        (i, j) pairs, i the top and j the bottom, sorted; each satisfies: i top-type, j bottom-type,
        the centre of i above the centre of j, the vertical gap, the vertical overlap (except for
        `bib_bottoms`) and the horizontal overlap within the thresholds.

    Example:
        >>> pair_candidates([[10, 0, 50, 40], [12, 38, 48, 90]], ["短袖上衣", "短裙"])
        [(0, 1)]
    """
    cfg = cfg or TwoPieceConfig()
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(categories) != len(b):
        raise ValueError(f"pair_candidates: {len(b)} boxes but {len(categories)} categories")
    unknown = [c for c in cfg.top_categories + cfg.bottom_categories + cfg.bib_bottoms if c not in CATEGORY_INDEX]
    if unknown:
        raise ValueError(f"two_piece config: unknown categories {unknown}")
    tops = [i for i, c in enumerate(categories) if _has_kind(c, set(cfg.top_categories))]
    bottoms = [j for j, c in enumerate(categories) if _has_kind(c, set(cfg.bottom_categories))]
    bib = {j for j in bottoms if _has_kind(categories[j], set(cfg.bib_bottoms))}
    return [(i, j) for i in tops for j in bottoms if i != j and _stacked(b[i], b[j], j in bib, cfg)]


def _stacked(top: np.ndarray, bottom: np.ndarray, bib: bool, cfg: TwoPieceConfig) -> bool:
    h_top, h_bot = top[3] - top[1], bottom[3] - bottom[1]
    w_top, w_bot = top[2] - top[0], bottom[2] - bottom[0]
    if min(h_top, h_bot, w_top, w_bot) <= 0:
        return False
    if (top[1] + top[3]) / 2 >= (bottom[1] + bottom[3]) / 2:
        return False
    gap = bottom[1] - top[3]  # > 0: empty space between the boxes
    if gap > cfg.max_gap * (h_top + h_bot) / 2:
        return False
    overlap = min(top[3], bottom[3]) - max(top[1], bottom[1])
    if not bib and overlap > cfg.max_overlap * min(h_top, h_bot):
        return False
    x_overlap = min(top[2], bottom[2]) - max(top[0], bottom[0])
    return x_overlap >= cfg.min_x_overlap * min(w_top, w_bot)
