"""The competition's `result.json` (SPEC §2): parsing and validation.

Format, one entry per predicted video (a video left out abstains)::

    {"<video_id>": {"item_id": "000044", "frame_index": 280,
                    "result": [{"img_name": "3", "item_box": [x1, y1, x2, y2], "frame_box": [x1, y1, x2, y2]}],
                    "ranked_items": ["000044", "000103", ...]}}

`ranked_items` is our addition (the matcher's ranked item list, best first); only the top-k item
accuracy reads it, the official score ignores it. Other unknown keys are ignored too, so a file
written by a newer matcher still scores.

Leniency, decided once here:
- `frame_index` may be an int-valued float (`280.0`, as numpy-backed writers produce); `280.5`,
  a bool, a string or a negative number is an error.
- `img_name` may carry a `.jpg` suffix (any case); it is stripped without error, since the image is
  still named unambiguously.
- Boxes are exactly 4 finite numbers (int or float, not bool); their order is not checked here, a
  box with x2 < x1 simply overlaps nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BoxXYXY = tuple[float, float, float, float]


class ResultFormatError(ValueError):
    """A malformed `result.json`; the message names the file (when known), the video id and the field."""


@dataclass(frozen=True)
class ResultEntry:
    """One localisation claim: a box in the product image `img_name` and a box in the named frame."""

    img_name: str  # without ".jpg", e.g. "3"
    item_box: BoxXYXY
    frame_box: BoxXYXY


@dataclass
class VideoPrediction:
    """The prediction for one video.

    Attributes:
        video_id: the key of the entry in `result.json`.
        item_id: the predicted product.
        frame_index: the frame the localisation refers to (scored at the nearest annotated frame).
        result: localisation claims, possibly empty.
        ranked_items: the matcher's ranked item list, best first, or None when absent.
    """

    video_id: str
    item_id: str
    frame_index: int
    result: list[ResultEntry] = field(default_factory=list)
    ranked_items: list[str] | None = None


def parse_results(obj_or_path: Mapping[str, Any] | str | Path) -> dict[str, VideoPrediction]:
    """Validate a `result.json` (already loaded, or a path to it) into typed predictions.

    Args:
        obj_or_path: the decoded JSON object, or the path of the file.

    Returns:
        video_id -> VideoPrediction, in the file's order.

    Raises:
        ResultFormatError: unreadable JSON, a top level that is not an object, or a bad field; the
            message names the file (for a path), the video id and the field, e.g.
            ``result.json: video '000134': field 'result[0].item_box': expected 4 finite numbers, got [1, 2, 3]``.
    """
    where = ""
    if isinstance(obj_or_path, (str, Path)):
        path = Path(obj_or_path)
        where = f"{path}: "
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultFormatError(f"{where}cannot read result JSON: {exc}") from exc
    else:
        obj = obj_or_path
    if not isinstance(obj, Mapping):
        raise ResultFormatError(f"{where}the top level must be an object keyed by video id, got {type(obj).__name__}")
    predictions: dict[str, VideoPrediction] = {}
    for video_id, entry in obj.items():
        if not isinstance(video_id, str):
            raise ResultFormatError(f"{where}video id {video_id!r}: must be a string, got {type(video_id).__name__}")
        predictions[video_id] = _parse_video(video_id, entry, where)
    return predictions


def _fail(where: str, video_id: str, field_name: str, message: str) -> ResultFormatError:
    return ResultFormatError(f"{where}video {video_id!r}: field {field_name!r}: {message}")


def _parse_video(video_id: str, entry: Any, where: str) -> VideoPrediction:
    if not isinstance(entry, Mapping):
        raise _fail(where, video_id, "<entry>", f"expected an object, got {type(entry).__name__}")
    for key in ("item_id", "frame_index", "result"):
        if key not in entry:
            raise _fail(where, video_id, key, "missing")
    item_id = entry["item_id"]
    if not isinstance(item_id, str) or not item_id:
        raise _fail(where, video_id, "item_id", f"expected a non-empty string, got {item_id!r}")
    frame_index = _parse_frame_index(entry["frame_index"], where, video_id)
    raw_result = entry["result"]
    if not isinstance(raw_result, list):
        raise _fail(where, video_id, "result", f"expected a list, got {type(raw_result).__name__}")
    result = [_parse_entry(e, where, video_id, f"result[{i}]") for i, e in enumerate(raw_result)]
    ranked = entry.get("ranked_items")
    if ranked is not None and (not isinstance(ranked, list) or not all(isinstance(r, str) for r in ranked)):
        raise _fail(where, video_id, "ranked_items", f"expected a list of item id strings, got {ranked!r}")
    return VideoPrediction(video_id, item_id, frame_index, result, list(ranked) if ranked is not None else None)


def _parse_frame_index(value: Any, where: str, video_id: str) -> int:
    # bool is an int subclass; `true` as a frame index is certainly a bug upstream.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, video_id, "frame_index", f"expected an integer, got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise _fail(where, video_id, "frame_index", f"expected an integer, got {value!r}")
    if value < 0:
        raise _fail(where, video_id, "frame_index", f"must be >= 0, got {value!r}")
    return int(value)


def _parse_entry(entry: Any, where: str, video_id: str, name: str) -> ResultEntry:
    if not isinstance(entry, Mapping):
        raise _fail(where, video_id, name, f"expected an object, got {type(entry).__name__}")
    img_name = entry.get("img_name")
    if not isinstance(img_name, str) or not img_name:
        raise _fail(where, video_id, f"{name}.img_name", f"expected a non-empty string, got {img_name!r}")
    if img_name.lower().endswith(".jpg"):
        img_name = img_name[:-4]
    item_box = _parse_box(entry.get("item_box"), where, video_id, f"{name}.item_box")
    frame_box = _parse_box(entry.get("frame_box"), where, video_id, f"{name}.frame_box")
    return ResultEntry(img_name, item_box, frame_box)


def _parse_box(value: Any, where: str, video_id: str, name: str) -> BoxXYXY:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    if not ok:
        raise _fail(where, video_id, name, f"expected 4 finite numbers [x1, y1, x2, y2], got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)
