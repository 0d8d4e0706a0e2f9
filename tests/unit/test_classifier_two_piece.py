"""Two-piece sets: `is_set` / `set_pieces` from records, `pair_candidates` on hand-made and synthetic boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesearch.classifier.two_piece import TwoPieceConfig, is_set, pair_candidates, set_pieces
from imagesearch.data.labels import CATEGORY_INDEX
from imagesearch.data.reader import load_split
from imagesearch.data.records import Box, Item, ProductImage
from imagesearch.synthetic import SyntheticConfig, generate_split, plan_items

TOP = [10, 0, 50, 40]  # 40 x 40


def _item(ids_per_image: list[list[int]]) -> Item:
    images = [
        ProductImage("000001", f"{k}.jpg", Path(f"{k}.jpg"), Path(f"{k}.json"), 100, 100,
                     [Box((0, 0, 10, 10), "短袖上衣", 0, 0, i) for i in ids])
        for k, ids in enumerate(ids_per_image)
    ]  # fmt: skip
    return Item("000001", images)


def test_is_set_and_pieces() -> None:
    two = _item([[20000102], [20000101, 20000102], [0]])
    assert is_set(two) and set_pieces(two) == [20000101, 20000102]
    one = _item([[20000101], [20000101, 0]])  # the same instance in two images is still one piece
    assert not is_set(one) and set_pieces(one) == [20000101]
    assert not is_set(_item([[0]])) and set_pieces(_item([[0]])) == []


@pytest.mark.parametrize(
    ("bottom", "category", "paired"),
    [
        ([12, 38, 48, 90], "短裙", True),  # overlap 2 <= 0.75 * 40; x overlap 36 of 36
        ([12, 49, 48, 89], "短裙", True),  # gap 9 <= 0.25 * (40 + 40) / 2 = 10
        ([12, 60, 48, 100], "短裙", False),  # gap 20 > 10
        ([36, 40, 76, 80], "长裤", True),  # x overlap 14 >= 0.3 * 40 = 12
        ([40, 40, 80, 80], "长裤", False),  # x overlap 10 < 12
        ([10, 5, 50, 45], "短裤", False),  # vertical overlap 35 > 30
        ([10, 0, 50, 100], "长裤", False),  # overlap 40 > 30 ...
        ([10, 0, 50, 100], "背带裤", True),  # ... but overalls' bib may cover the top
        ([10, -40, 50, 0], "短裙", False),  # above the top: centre not below
        ([12, 38, 48, 90], "长袖连衣裙", False),  # a dress is never a bottom
        ([12, 38, 48, 90], "短裙+中等半身裙", True),  # a merged group of bottoms
        ([12, 38, 48, 90], CATEGORY_INDEX["短裙"], True),  # a category index
    ],
)
def test_pair_rule_by_hand(bottom: list[float], category: str | int, paired: bool) -> None:
    assert pair_candidates([TOP, bottom], ["短袖上衣", category]) == ([(0, 1)] if paired else [])


def test_pairs_among_many() -> None:
    boxes = [[0, 60, 40, 100], TOP, [100, 0, 140, 40], [100, 45, 140, 80], [12, 40, 48, 90]]
    cats = ["长裤", "长袖衬衫", "短外套", "中裤", "短裙"]
    # 1 (top) pairs with 4 (gap 0), not 0 (gap 20 > 10); 2 pairs with 3 (gap 5); tops never pair with tops.
    assert pair_candidates(boxes, cats) == [(1, 4), (2, 3)]
    assert pair_candidates(boxes, cats, TwoPieceConfig(max_gap=0.6)) == [(1, 0), (1, 4), (2, 3)]
    assert pair_candidates([], []) == []
    with pytest.raises(ValueError, match="2 boxes but 1 categories"):
        pair_candidates([TOP, TOP], ["短裙"])


def test_two_piece_on_synthetic_split(tmp_path: Path) -> None:
    cfg = SyntheticConfig(frames=81, width=96, height=160, image_size=96, two_piece_fraction=0.5, max_images=3)
    generate_split(tmp_path / "split", 10, 3, cfg)
    split = load_split(tmp_path / "split")
    specs = {s.item_id: s for s in plan_items(10, 3, cfg)}  # the generator's plan is the oracle
    assert sum(len(s.pieces) == 2 for s in specs.values()) >= 3
    checked = 0
    for item_id, item in split.items.items():
        pieces = [g.instance_id for g in specs[item_id].pieces]
        assert is_set(item) == (len(pieces) == 2) and set_pieces(item) == sorted(pieces)
        if len(pieces) < 2:
            continue
        for frame in split.videos[item_id].frames:
            ids = [b.instance_id for b in frame.boxes]
            if set(pieces) <= set(ids):
                pairs = pair_candidates([b.xyxy for b in frame.boxes], [b.label for b in frame.boxes])
                assert (ids.index(pieces[0]), ids.index(pieces[1])) in pairs, (item_id, frame.frame_index)
                checked += 1
    assert checked >= 6
