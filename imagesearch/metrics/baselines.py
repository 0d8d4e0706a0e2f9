"""Reference results for a split: the oracle built from the annotations, and a random guess.

They bound the score from above and below: the oracle scores 1.0 at every level, a random guess
scores about 1/number-of-items at S1. The demo prints both; tests use the oracle.
"""

from __future__ import annotations

import random
from typing import Any

from imagesearch.data.records import Split


def oracle_results(split: Split) -> dict[str, Any]:
    """The perfect `result.json` content from the annotations.

    For each video with a product: its item, the first annotated frame holding it, and both boxes of
    that instance (in that frame and in the first product image showing it).

    Returns:
        `{video_id: {"item_id", "frame_index", "result": [{"img_name", "item_box", "frame_box"}]}}`.
    """
    out: dict[str, Any] = {}
    for vid, video in split.videos.items():
        for frame in video.frames:
            fb = next((b for b in frame.boxes if b.instance_id in split.instance_to_item), None)
            if fb is None:
                continue
            item_id = split.instance_to_item[fb.instance_id]
            image = next(
                im for im in split.items[item_id].images if fb.instance_id in {b.instance_id for b in im.boxes}
            )
            ib = next(b for b in image.boxes if b.instance_id == fb.instance_id)
            entry = {"img_name": image.stem, "item_box": list(ib.xyxy), "frame_box": list(fb.xyxy)}
            out[vid] = {"item_id": item_id, "frame_index": frame.frame_index, "result": [entry]}
            break
    return out


def random_results(split: Split, seed: int = 0) -> dict[str, Any]:
    """A random guess for every annotated video: a random item, frame, product image and boxes.

    Returns:
        `result.json` content, with `ranked_items` a random permutation of the items.
    """
    rng = random.Random(seed)
    items = sorted(split.items)
    out: dict[str, Any] = {}
    for vid, video in split.videos.items():
        if not items or not video.frames:
            continue
        ranked = rng.sample(items, len(items))
        item = split.items[ranked[0]]
        if not item.images:
            continue
        image = rng.choice(item.images)
        frame = rng.choice(video.frames)
        w, h = video.width or 540, video.height or 960

        def rand_box(width: int, height: int) -> list[int]:
            x1, y1 = rng.randrange(0, width // 2), rng.randrange(0, height // 2)
            return [x1, y1, x1 + rng.randrange(8, width // 2), y1 + rng.randrange(8, height // 2)]

        entry = {"img_name": image.stem, "item_box": rand_box(image.width, image.height), "frame_box": rand_box(w, h)}
        out[vid] = {
            "item_id": item.item_id,
            "frame_index": frame.frame_index,
            "result": [entry],
            "ranked_items": ranked,
        }
    return out
