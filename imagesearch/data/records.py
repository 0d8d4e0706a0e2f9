"""Typed records of a split in the competition layout (SPEC §1).

Shared by every stage: the reader fills them, the synthetic generator writes files that read back
into them, the scorer and the stages consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Box:
    """One annotated garment.

    Attributes:
        xyxy: absolute pixel box (x1, y1, x2, y2) on the original image or frame.
        label: canonical category name (one of `labels.CATEGORIES`).
        viewpoint: 0 front, 1 back, 2 left, 3 right.
        display: 0 product alone, 1 worn by a person (the real data has one 2).
        instance_id: 0 for a distractor garment, > 0 for a product instance.
    """

    xyxy: tuple[float, float, float, float]
    label: str
    viewpoint: int
    display: int
    instance_id: int


@dataclass
class ProductImage:
    """A gallery image `image/<item_id>/<img_name>` and its annotation, if any.

    Every readable image file of a split is one, annotated or not: predictions use the files, and
    annotations only train and score. `annotation_path` is None when no valid annotation was read for
    it (the competition's test split has none); `boxes` is then empty, which does not mean the image
    shows no garment.
    """

    item_id: str
    img_name: str  # file name, e.g. "1.jpg"
    path: Path
    annotation_path: Path | None
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)

    @property
    def annotated(self) -> bool:
        """Whether a valid annotation file was read for this image."""
        return self.annotation_path is not None

    @property
    def stem(self) -> str:
        """The name as `result.json` writes it: without `.jpg`."""
        return Path(self.img_name).stem


@dataclass
class AnnotatedFrame:
    """One annotated frame of a video (frames 0, 40, ..., 360 in the real data)."""

    frame_index: int
    boxes: list[Box] = field(default_factory=list)


@dataclass
class Item:
    """A product: its gallery images and optional title text (`image_text/<item_id>.txt`)."""

    item_id: str
    images: list[ProductImage] = field(default_factory=list)
    text: str | None = None

    @property
    def instance_ids(self) -> set[int]:
        return {b.instance_id for im in self.images for b in im.boxes if b.instance_id > 0}


@dataclass
class Video:
    """A live-stream clip and its annotation, if any. `path` may not exist (a missing video).

    `annotation_path` is None when no valid annotation was read (the test split): `frames` is then
    empty and the video can be predicted but not scored.
    """

    video_id: str
    path: Path
    annotation_path: Path | None
    frames: list[AnnotatedFrame] = field(default_factory=list)
    text: str | None = None
    present: bool = False
    num_frames: int | None = None  # from the container when present
    width: int | None = None
    height: int | None = None

    @property
    def instance_ids(self) -> set[int]:
        return {b.instance_id for f in self.frames for b in f.boxes if b.instance_id > 0}

    @property
    def annotated(self) -> bool:
        """Whether a valid annotation file was read for this video."""
        return self.annotation_path is not None


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out in lenient mode, with the file and the field at fault."""

    path: Path
    field: str
    reason: str


@dataclass
class Split:
    """A whole split: items (gallery), videos (queries), the instance -> item map, what was skipped."""

    root: Path
    items: dict[str, Item] = field(default_factory=dict)
    videos: dict[str, Video] = field(default_factory=dict)
    instance_to_item: dict[int, str] = field(default_factory=dict)
    skipped: list[SkippedRecord] = field(default_factory=list)

    def product_images(self) -> list[ProductImage]:
        """Every readable product image, annotated or not (the gallery's input)."""
        return [im for item in self.items.values() for im in item.images]

    def annotated_images(self) -> list[ProductImage]:
        """The product images with a valid annotation (what training and scoring may use)."""
        return [im for im in self.product_images() if im.annotated]

    @property
    def annotated(self) -> bool:
        """Whether any product image or video of the split has a valid annotation (False for a test split)."""
        return any(v.annotated for v in self.videos.values()) or any(im.annotated for im in self.product_images())
