"""Leave-one-video-out folds of a small annotated split (the real 10-item sample has 3 videos).

Fold k holds out one present video and its item: `train` has every other item's product images and
every other present video; `eval` has every item's product images (the gallery the held-out video is
searched against) and the held-out video; `heldout` has only the held-out item's images and the
held-out video (the detector's unseen real images and frames). The folders are made of symbolic
links to the source files (nothing is copied), in the competition layout, so every reader and
script takes them as they take a real split.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from imagesearch.data.reader import load_split

__all__ = ["Fold", "make_folds"]

FOLD_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """One fold: the held-out video and item, and the three split folders."""

    video_id: str
    item_id: str
    train: Path
    eval: Path
    heldout: Path


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def _link_item(source: Path, dst: Path, item_id: str) -> None:
    for sub in ("image", "image_annotation"):
        if (source / sub / item_id).is_dir():
            _link(source / sub / item_id, dst / sub / item_id)
    if (source / "image_text" / f"{item_id}.txt").is_file():
        _link(source / "image_text" / f"{item_id}.txt", dst / "image_text" / f"{item_id}.txt")


def _link_video(source: Path, dst: Path, video_id: str) -> None:
    for sub, ext in (("video", ".mp4"), ("video_annotation", ".json"), ("video_text", ".txt")):
        if (source / sub / f"{video_id}{ext}").is_file():
            _link(source / sub / f"{video_id}{ext}", dst / sub / f"{video_id}{ext}")


def make_folds(source: str | Path, out: str | Path, holdout: list[str] | None = None) -> list[Fold]:
    """Write the leave-one-video-out folds of `source` under `out` (once; reused while unchanged).

    Args:
        source: an annotated split.
        out: parent folder of `fold_<video_id>/{train,eval,heldout}`.
        holdout: the videos to hold out, one fold each; default every present video with a product.

    Returns:
        One `Fold` per held-out video, in the given (or sorted) order.

    Raises:
        ValueError: a held-out video that is absent, unannotated or shows no product of the split.
    """
    source, out = Path(source).resolve(), Path(out)
    split = load_split(source, probe_videos=False)
    present = [v for v in split.videos.values() if v.present and v.annotated]
    item_of: dict[str, str] = {}
    for v in present:
        items = sorted({split.instance_to_item[i] for i in v.instance_ids if i in split.instance_to_item})
        if items:
            item_of[v.video_id] = items[0]
    chosen = list(holdout) if holdout else sorted(item_of)
    bad = [v for v in chosen if v not in item_of]
    if bad:
        raise ValueError(f"folds: {bad} are not present, annotated videos showing an item of {source}")
    folds = []
    for video_id in chosen:
        item_id = item_of[video_id]
        base = out / f"fold_{video_id}"
        fold = Fold(video_id, item_id, base / "train", base / "eval", base / "heldout")
        stamp = {"version": FOLD_VERSION, "source": str(source), "video": video_id, "item": item_id,
                 "items": sorted(split.items), "videos": sorted(v.video_id for v in present)}  # fmt: skip
        marker = base / "fold.json"
        if not (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp):
            for other in split.items:
                if other != item_id:
                    _link_item(source, fold.train, other)
                _link_item(source, fold.eval, other)
            _link_item(source, fold.heldout, item_id)
            for v in present:
                if v.video_id != video_id and item_of.get(v.video_id) != item_id:
                    _link_video(source, fold.train, v.video_id)
            _link_video(source, fold.eval, video_id)
            _link_video(source, fold.heldout, video_id)
            marker.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        folds.append(fold)
    return folds
