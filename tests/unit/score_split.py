"""A hand-made split for the scorer tests, and the perfect result built from its annotations.

Items: "A" (instance 101), "B" a two-piece set (201 top, 202 bottom), "C" (301).
Videos (frames annotated at 0, 40, 80):
- vA: frames 0 and 40 hold only a distractor; frame 80 holds instance 101 twice.
- vB: frame 0 holds 201, frame 40 holds 202, frame 80 holds both.
- vC: frame 0 holds 301.
- vD: distractors only (not in N_GT).
"""

from __future__ import annotations

from pathlib import Path

from imagesearch.data.records import AnnotatedFrame, Box, Item, ProductImage, Split, Video


def box(xyxy: tuple[float, float, float, float], instance_id: int) -> Box:
    return Box(xyxy=xyxy, label="短袖上衣", viewpoint=0, display=1, instance_id=instance_id)


def _image(item_id: str, k: int, boxes: list[Box]) -> ProductImage:
    path = Path("image") / item_id / f"{k}.jpg"
    return ProductImage(item_id, f"{k}.jpg", path, Path(f"image_annotation/{item_id}/{k}.json"), 800, 800, boxes)


def _video(video_id: str, frames: dict[int, list[Box]]) -> Video:
    annotated = [AnnotatedFrame(i, b) for i, b in frames.items()]
    return Video(video_id, Path(f"video/{video_id}.mp4"), Path(f"video_annotation/{video_id}.json"), annotated)


DISTRACTOR = box((500, 500, 540, 540), 0)


def build_split() -> Split:
    items = {
        "A": Item("A", [_image("A", 0, [box((0, 0, 100, 100), 101)]), _image("A", 1, [box((10, 10, 110, 110), 101)])]),
        "B": Item("B", [_image("B", 0, [box((0, 0, 50, 100), 201), box((50, 0, 100, 100), 202)])]),
        "C": Item("C", [_image("C", 0, [box((0, 0, 100, 100), 301)])]),
    }
    videos = {
        "vA": _video(
            "vA", {0: [DISTRACTOR], 40: [DISTRACTOR], 80: [box((0, 0, 100, 100), 101), box((300, 300, 400, 400), 101)]}
        ),
        "vB": _video(
            "vB",
            {
                0: [box((0, 0, 100, 100), 201)],
                40: [box((200, 200, 300, 300), 202), DISTRACTOR],
                80: [box((0, 0, 100, 100), 201), box((200, 200, 300, 300), 202)],
            },
        ),
        "vC": _video("vC", {0: [box((0, 0, 100, 100), 301)], 40: [], 80: []}),
        "vD": _video("vD", {0: [DISTRACTOR], 40: [DISTRACTOR], 80: []}),
    }
    return Split(Path("hand-made"), items, videos, {101: "A", 201: "B", 202: "B", 301: "C"})
