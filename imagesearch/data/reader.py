"""Read a split in the competition layout into the records of `records.py` (SPEC §1).

Validation rules (each names the file and the field at fault):
- a JSON file that does not parse, is not an object, lacks `annotations` / `frames`, or whose
  `item_id` / `img_name` / `video_id` disagrees with its path: the whole file;
- a frame without an integer `frame_index` >= 0, with an index at or beyond the video's frame
  count (when the video is probed), repeated in the same file, or without an `annotations` list:
  that frame;
- an annotation without `box`, `label`, `viewpoint`, `display` or `instance_id`, a box that is not
  4 finite numbers, x2 <= x1 or y2 <= y1, a box outside the image or frame, an unknown label, a
  negative or non-integer id, or an instance id already seen in another item's images: that box;
- an annotation whose image file is missing, or an unreadable image file: that image;
- an image without annotation in a split that has `image_annotation/`: reported, and the image is kept
  unannotated (predictions read the files; annotations only train and score).
A product image or a present video whose annotation file is rejected whole stays in the split,
unannotated.
Box bounds: a box that overruns the image or frame by at most `BOX_TOLERANCE_PX` on a side is
clipped to it (annotation tools round and snap past the edge); beyond that it is rejected. A frame's
size is known only when its video was probed; otherwise only x1, y1 >= 0 is checked.
In strict mode the first error raises `DataError`; in lenient mode (the default) the unit above is
left out and a `SkippedRecord` is appended to `Split.skipped`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from imagesearch.data.labels import UnknownLabelError, normalise_label
from imagesearch.data.records import AnnotatedFrame, Box, Item, ProductImage, SkippedRecord, Split, Video
from imagesearch.data.video import VideoError, probe_video

BOX_TOLERANCE_PX = 5.0
BOX_FIELDS = ("box", "label", "viewpoint", "display", "instance_id")


class DataError(ValueError):
    """A malformed record met in strict mode. `str(err)` reads `<path>: <field>: <reason>`."""

    def __init__(self, path: Path, field: str, reason: str) -> None:
        super().__init__(f"{path}: {field}: {reason}")
        self.path, self.field, self.reason = Path(path), field, reason


class _Invalid(Exception):
    """Raised by the parsers; turned into a DataError or a SkippedRecord by `_Report`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class _Report:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skipped: list[SkippedRecord] = []

    def __call__(self, path: Path, field: str, reason: str) -> None:
        if self.strict:
            raise DataError(path, field, reason)
        self.skipped.append(SkippedRecord(path=path, field=field, reason=reason))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: tolerate a byte-order mark, which some annotation tools write.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Invalid("json", f"unreadable JSON: {err}") from err
    if not isinstance(data, dict):
        raise _Invalid("json", f"not an object: {type(data).__name__}")
    return data


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8-sig", errors="replace").strip()


def _check_id(data: dict[str, Any], key: str, expected: str) -> None:
    if key not in data:
        raise _Invalid(key, "missing field")
    if str(data[key]) != expected:
        raise _Invalid(key, f"mismatch: {data[key]!r} in the file, {expected!r} from its path")


def _clip_xyxy(xyxy: list[float], size: tuple[int, int] | None) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = xyxy
    shown = "[" + ", ".join(f"{v:g}" for v in xyxy) + "]"
    if x2 <= x1:
        raise _Invalid("box", f"x2 <= x1: {shown}")
    if y2 <= y1:
        raise _Invalid("box", f"y2 <= y1: {shown}")
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol:
        raise _Invalid("box", f"box outside the picture: {shown} starts more than {tol:g} px below 0")
    width, height = (float(size[0]), float(size[1])) if size is not None else (math.inf, math.inf)
    if x2 > width + tol or y2 > height + tol:
        raise _Invalid("box", f"box outside the picture: {shown} ends more than {tol:g} px past {width:g}x{height:g}")
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        raise _Invalid("box", f"box outside the picture: {shown} has no area inside {width:g}x{height:g}")
    return (x1, y1, x2, y2)


def _parse_box(ann: Any, where: str, size: tuple[int, int] | None) -> Box:
    """One annotation -> Box; `where` is its field path, e.g. `frames[3].annotations[0]`."""
    if not isinstance(ann, dict):
        raise _Invalid(where, f"not an object: {type(ann).__name__}")
    for key in BOX_FIELDS:
        if key not in ann:
            raise _Invalid(f"{where}.{key}", "missing field")
    raw = ann["box"]
    if not (
        isinstance(raw, list)
        and len(raw) == 4
        and all((_is_int(v) or isinstance(v, float)) and math.isfinite(v) for v in raw)
    ):
        raise _Invalid(f"{where}.box", f"not 4 numbers: {raw!r}")
    try:
        xyxy = _clip_xyxy([float(v) for v in raw], size)
    except _Invalid as err:
        raise _Invalid(f"{where}.box", err.reason) from None
    if not isinstance(ann["label"], str):
        raise _Invalid(f"{where}.label", f"unknown label: {ann['label']!r}")
    try:
        label = normalise_label(ann["label"])
    except UnknownLabelError:
        raise _Invalid(f"{where}.label", f"unknown label: {ann['label']!r}") from None
    for key in ("viewpoint", "display", "instance_id"):
        if not _is_int(ann[key]):
            raise _Invalid(f"{where}.{key}", f"not an integer: {ann[key]!r}")
    if ann["instance_id"] < 0:
        raise _Invalid(f"{where}.instance_id", f"negative: {ann['instance_id']}")
    return Box(xyxy, label, ann["viewpoint"], ann["display"], ann["instance_id"])


def _parse_boxes(anns: list[Any], prefix: str, size: tuple[int, int] | None, path: Path, report: _Report) -> list[Box]:
    boxes = []
    for i, ann in enumerate(anns):
        try:
            boxes.append(_parse_box(ann, f"{prefix}annotations[{i}]", size))
        except _Invalid as err:
            report(path, err.field, err.reason)
    return boxes


def _numeric_key(name: str) -> tuple[int, int, str]:
    stem = Path(name).stem
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def _list_dir(path: Path, suffix: str | None = None, dirs: bool = False) -> list[str]:
    if not path.is_dir():
        return []
    with os.scandir(path) as entries:
        return [
            e.name
            for e in entries
            if (e.is_dir() if dirs else e.is_file() and (suffix is None or e.name.endswith(suffix)))
        ]


def _read_annotation(ann_path: Path, item_id: str, img_name: str) -> list[Any]:
    """The `annotations` list of a product image's annotation file, its ids checked against its path."""
    data = _read_json(ann_path)
    _check_id(data, "item_id", item_id)
    _check_id(data, "img_name", img_name)
    if not isinstance(data.get("annotations"), list):
        raise _Invalid("annotations", "missing field" if "annotations" not in data else "not a list")
    return data["annotations"]


def _load_image(root: Path, item_id: str, name: str, has_annotation: bool, report: _Report) -> ProductImage | None:
    """One product image file; its annotation attached when there is a valid one (else kept unannotated)."""
    img_path = root / "image" / item_id / name
    try:
        with Image.open(img_path) as im:  # reads the header only
            width, height = im.size
    except (OSError, ValueError) as err:
        report(img_path, "image", f"unreadable image: {err}")
        return None
    image = ProductImage(item_id, name, img_path, None, width, height)
    if not has_annotation:
        return image
    ann_path = root / "image_annotation" / item_id / f"{Path(name).stem}.json"
    try:
        anns = _read_annotation(ann_path, item_id, name)
    except _Invalid as err:
        report(ann_path, err.field, err.reason)  # the image stays in the gallery, unannotated
        return image
    image.annotation_path = ann_path
    image.boxes = _parse_boxes(anns, "", (width, height), ann_path, report)
    return image


def _load_item(
    root: Path, item_id: str, instance_to_item: dict[int, str], annotated_split: bool, report: _Report
) -> Item | None:
    """An item from its image files (`image/<item_id>/*.jpg`); annotations attach where they exist.

    An annotation without its image file is reported and left out (nothing to show); an image without
    annotation is kept, unannotated, and reported only when the split has `image_annotation/`.
    """
    ann_stems = {Path(n).stem for n in _list_dir(root / "image_annotation" / item_id, ".json")}
    names = sorted(_list_dir(root / "image" / item_id, ".jpg"), key=_numeric_key)
    for stem in sorted(ann_stems - {Path(n).stem for n in names}, key=_numeric_key):
        path = root / "image_annotation" / item_id / f"{stem}.json"
        report(path, "img_name", f"image file missing: {root / 'image' / item_id / f'{stem}.jpg'}")
    images = []
    for name in names:
        has_annotation = Path(name).stem in ann_stems
        if annotated_split and not has_annotation:
            report(root / "image" / item_id / name, "image", "image without annotation")
        image = _load_image(root, item_id, name, has_annotation, report)
        if image is None:
            continue
        kept = []
        for i, box in enumerate(image.boxes):
            owner = instance_to_item.setdefault(box.instance_id, item_id) if box.instance_id > 0 else item_id
            if owner != item_id:
                report(image.annotation_path, f"annotations[{i}].instance_id", f"instance in another item: {owner}")  # type: ignore[arg-type]
                continue
            kept.append(box)
        image.boxes = kept
        images.append(image)
    if not images:
        return None
    return Item(item_id, images, _read_text(root / "image_text" / f"{item_id}.txt"))


def _parse_frame(raw: Any, j: int, num_frames: int | None, seen: set[int]) -> tuple[int, list[Any]]:
    where = f"frames[{j}]"
    if not isinstance(raw, dict):
        raise _Invalid(where, f"not an object: {type(raw).__name__}")
    if "frame_index" not in raw:
        raise _Invalid(f"{where}.frame_index", "missing field")
    index = raw["frame_index"]
    if not _is_int(index) or index < 0:
        raise _Invalid(f"{where}.frame_index", f"not an integer >= 0: {index!r}")
    if num_frames is not None and index >= num_frames:
        raise _Invalid(f"{where}.frame_index", f"frame index outside the video: {index} >= {num_frames} frames")
    if index in seen:
        raise _Invalid(f"{where}.frame_index", f"repeated frame index: {index}")
    if not isinstance(raw.get("annotations"), list):
        raise _Invalid(f"{where}.annotations", "missing field" if "annotations" not in raw else "not a list")
    return index, raw["annotations"]


def _read_frames(ann_path: Path, video_id: str, num_frames: int | None, size: tuple[int, int] | None, report: _Report) -> list[AnnotatedFrame]:  # fmt: skip
    data = _read_json(ann_path)
    _check_id(data, "video_id", video_id)
    if not isinstance(data.get("frames"), list):
        raise _Invalid("frames", "missing field" if "frames" not in data else "not a list")
    seen: set[int] = set()
    frames = []
    for j, raw in enumerate(data["frames"]):
        try:
            index, anns = _parse_frame(raw, j, num_frames, seen)
        except _Invalid as err:
            report(ann_path, err.field, err.reason)
            continue
        seen.add(index)
        frames.append(AnnotatedFrame(index, _parse_boxes(anns, f"frames[{j}].", size, ann_path, report)))
    return sorted(frames, key=lambda f: f.frame_index)


def _load_video(root: Path, video_id: str, probe: bool, report: _Report) -> Video | None:
    """A video from its `.mp4` and/or its annotation; None when neither is usable."""
    ann_path = root / "video_annotation" / f"{video_id}.json"
    path = root / "video" / f"{video_id}.mp4"
    video = Video(video_id, path, None, present=path.is_file())
    if probe and video.present:
        try:
            info = probe_video(video.path)
            video.num_frames, video.width, video.height = info.frames, info.width, info.height
        except VideoError as err:
            video.present = False
            report(video.path, "video", f"unreadable video: {err}")
    video.text = _read_text(root / "video_text" / f"{video_id}.txt")
    if not ann_path.is_file():
        return video if video.present else None
    size = (video.width, video.height) if video.width and video.height else None
    try:
        video.frames = _read_frames(ann_path, video_id, video.num_frames, size, report)
    except _Invalid as err:
        report(ann_path, err.field, err.reason)  # a present video stays, to be predicted, unannotated
        return video if video.present else None
    video.annotation_path = ann_path
    return video


SPLIT_FOLDERS = ("image", "video", "image_annotation", "video_annotation")


def load_split(root: str | Path, strict: bool = False, probe_videos: bool = True) -> Split:
    """Read one split directory (e.g. `validation_dataset_part1`, or the unannotated test split) into a `Split`.

    Items come from the `image/<item_id>/` folders (every readable `.jpg` is a product image; its
    annotation attaches when valid), videos from `video/*.mp4` and `video_annotation/*.json` (a video
    whose `.mp4` is missing is kept with `present=False` when annotated; a present video without a
    valid annotation is kept unannotated). The annotation folders are optional: without them (the
    competition's test split) the split can be predicted but not scored. `instance_to_item` is built
    from the product-image annotations only. Items, images (by numeric k), videos and frames are sorted.

    Args:
        root: the split directory.
        strict: raise `DataError` on the first malformed record instead of skipping it.
        probe_videos: open each present `.mp4` for its frame count and size (about 1 ms each); this
            also enables the frame-index and frame-box bounds checks.

    Returns:
        The `Split`, with `skipped` listing what lenient mode left out.

    Raises:
        FileNotFoundError: `root` is not a directory or has none of image/, video/, image_annotation/,
            video_annotation/.
        DataError: in strict mode, the first malformed record.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: split directory not found")
    if not any((root / name).is_dir() for name in SPLIT_FOLDERS):
        raise FileNotFoundError(f"{root}: not a split directory (none of {', '.join(n + '/' for n in SPLIT_FOLDERS)})")
    report = _Report(strict)
    split = Split(root=root)
    annotated = (root / "image_annotation").is_dir()
    item_ids = sorted(set(_list_dir(root / "image_annotation", dirs=True)) | set(_list_dir(root / "image", dirs=True)))
    for item_id in tqdm(item_ids, desc="items", unit="item", disable=None, leave=False):
        item = _load_item(root, item_id, split.instance_to_item, annotated, report)
        if item is not None:
            split.items[item_id] = item
    stems = {Path(n).stem for n in _list_dir(root / "video_annotation", ".json")}
    stems |= {Path(n).stem for n in _list_dir(root / "video", ".mp4")}
    for video_id in tqdm(sorted(stems), desc="videos", unit="video", disable=None, leave=False):
        video = _load_video(root, video_id, probe_videos, report)
        if video is not None:
            split.videos[video_id] = video
    split.instance_to_item = dict(sorted(split.instance_to_item.items()))
    split.skipped = report.skipped
    return split
