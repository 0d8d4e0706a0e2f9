"""Garment crops of a split: the training and evaluation unit of the classifier and the embedder.

Decoding a video to cut ten annotated frames is the slow part of every epoch, so crops are cut
once (`extract_crops`) into a cache folder of JPEGs with a `crops.jsonl` index, and datasets read
those. The index is written last and atomically: a folder without it is incomplete and is redone.

Training crops are augmented from a seed carried in the dataset key (`SeededCrops`, fed by
`AugSeedSampler` or the embedder's samplers), so augmentation repeats with the run seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from imagesearch.data.labels import CATEGORY_INDEX
from imagesearch.data.records import Box, Split
from imagesearch.io import atomic_write_text
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

INDEX_NAME = "crops.jsonl"


@dataclass(frozen=True)
class CropRecord:
    """One garment crop and where it came from.

    Attributes:
        file: the cached crop JPEG, relative to the cache folder.
        source: "frame" (a video frame) or "image" (a product image).
        item_id: the product the garment is (via the split's instance -> item map); "" for a distractor.
        instance_id: 0 for a distractor.
        label: canonical category name; `category` is its index in `labels.CATEGORIES`.
        box: the annotated box (x1, y1, x2, y2) on the original frame or image.
        video_id, frame_index: set for frame crops; img_name: set for product-image crops.
    """

    file: str
    source: str
    item_id: str
    instance_id: int
    label: str
    category: int
    box: tuple[float, float, float, float]
    video_id: str = ""
    frame_index: int = -1
    img_name: str = ""


def expand_box(box: Sequence[float], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow a box by `margin` x its size on each side, clipped to the image; integer pixel bounds.

    >>> expand_box((10, 10, 30, 50), 0.1, 100, 100)
    (8, 6, 32, 54)
    """
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
    right, bottom = min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy)))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def cut_crop(image: np.ndarray, box: Sequence[float], margin: float, max_side: int) -> np.ndarray:
    """Cut `box` (expanded by `margin`) out of an RGB image, shrunk so its longer side <= max_side."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin, w, h)
    crop = image[y1:y2, x1:x2]
    scale = max_side / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def cache_key(split: Split, margin: float, max_side: int, include_distractors: bool) -> str:
    """A short hash of what decides the crops, so a changed split or setting never reuses a stale cache."""
    h = hashlib.sha1()
    h.update(json.dumps([str(split.root.resolve()), margin, max_side, include_distractors]).encode())
    for item in split.items.values():
        for im in item.images:
            h.update(f"{im.path}:{im.boxes}".encode())
    for video in split.videos.values():
        h.update(f"{video.path}:{video.present}:{[(f.frame_index, f.boxes) for f in video.frames]}".encode())
    return h.hexdigest()[:12]


def _record(file: str, source: str, box: Box, split: Split, **where: Any) -> CropRecord:
    return CropRecord(
        file=file,
        source=source,
        item_id=split.instance_to_item.get(box.instance_id, "") if box.instance_id > 0 else "",
        instance_id=box.instance_id,
        label=box.label,
        category=CATEGORY_INDEX[box.label],
        box=tuple(float(v) for v in box.xyxy),  # type: ignore[arg-type]
        **where,
    )


def _write_jpeg(path: Path, crop_rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"cannot encode crop {path}")
    path.write_bytes(buf.tobytes())


def extract_crops(
    split: Split,
    cache_root: str | Path,
    margin: float = 0.1,
    max_side: int = 256,
    include_distractors: bool = False,
    progress: bool = True,
) -> tuple[Path, list[CropRecord]]:
    """Cut every annotated garment of a split into a cache folder, once.

    Args:
        split: a loaded split (`imagesearch.data.reader.load_split`).
        cache_root: parent folder; crops go to `<cache_root>/<key>/` where key hashes the split
            and these settings.
        margin: box growth on each side, as a fraction of the box size.
        max_side: longer side of a stored crop, in pixels (larger crops are shrunk).
        include_distractors: also keep garments with instance_id 0 (classifier training may use them).
        progress: show tqdm bars.

    Returns:
        (the cache folder, the crop records). Videos that are missing or cannot be read are
        logged and left out; their crops are simply absent.
    """
    from imagesearch.data.video import VideoError, read_frames  # decoding is only needed here

    folder = Path(cache_root) / cache_key(split, margin, max_side, include_distractors)
    index = folder / INDEX_NAME
    if index.is_file():
        return folder, load_crop_index(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    records: list[CropRecord] = []

    def keep(box: Box) -> bool:
        return include_distractors or box.instance_id > 0

    for im in progress_bar(split.product_images(), enabled=progress, desc="crops: product images"):
        boxes = [b for b in im.boxes if keep(b)]
        if not boxes:
            continue
        bgr = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("cannot read product image %s; its crops are left out", im.path)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for j, box in enumerate(boxes):
            name = f"img/i_{im.item_id}_{im.stem}_{j}.jpg"
            _write_jpeg(folder / name, cut_crop(rgb, box.xyxy, margin, max_side))
            records.append(_record(name, "image", box, split, img_name=im.img_name))
    skipped = 0
    for video in progress_bar(list(split.videos.values()), enabled=progress, desc="crops: video frames"):
        frames = [f for f in video.frames if any(keep(b) for b in f.boxes)]
        if not frames or not video.present:
            skipped += bool(frames)
            continue
        try:
            images = read_frames(video.path, [f.frame_index for f in frames])
        except VideoError as exc:
            log.warning("%s; its crops are left out", exc)
            skipped += 1
            continue
        for frame, rgb in zip(frames, images, strict=True):
            for j, box in enumerate(b for b in frame.boxes if keep(b)):
                name = f"img/v_{video.video_id}_{frame.frame_index}_{j}.jpg"
                _write_jpeg(folder / name, cut_crop(rgb, box.xyxy, margin, max_side))
                records.append(
                    _record(name, "frame", box, split, video_id=video.video_id, frame_index=frame.frame_index)
                )
    if skipped:
        log.info("crops: %d annotated videos missing or unreadable, left out", skipped)
    # What made this folder, for `imagesearch.caches` (listing and pruning); nothing reads it back here.
    meta = {
        "split": str(split.root.resolve()),
        "margin": margin,
        "max_side": max_side,
        "distractors": include_distractors,
    }
    atomic_write_text(folder / "meta.json", json.dumps(meta) + "\n")
    atomic_write_text(index, "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records))
    return folder, records


def load_crop_index(folder: str | Path) -> list[CropRecord]:
    """Read `<folder>/crops.jsonl` back into records."""
    path = Path(folder) / INDEX_NAME
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            row["box"] = tuple(row["box"])
            out.append(CropRecord(**row))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path}:{line_no}: bad crop record: {exc}") from exc
    return out


class CropDataset(Dataset):
    """Cached crops as tensors.

    Args:
        folder: the cache folder returned by `extract_crops`.
        records: the crops to serve (a subset of the folder's index is fine).
        transform: an albumentations-style callable `transform(image=rgb)["image"]` giving a float
            tensor (C, H, W); see `imagesearch.data.augment`.
        target: a function of a record giving the target (an int class, an item index, ...).

    Returns from `__getitem__`: (image (3, H, W) float32, target as a 0-d int64 tensor).
    """

    def __init__(
        self,
        folder: str | Path,
        records: Sequence[CropRecord],
        transform: Callable[..., dict[str, Any]],
        target: Callable[[CropRecord], int],
    ) -> None:
        self.folder = Path(folder)
        self.records = list(records)
        self.transform = transform
        self.target = target

    def __len__(self) -> int:
        return len(self.records)

    def load_rgb(self, index: int) -> np.ndarray:
        path = self.folder / self.records[index].file
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read cached crop {path}; delete {self.folder} to rebuild the cache")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.transform(image=self.load_rgb(index))["image"]
        return image, torch.tensor(self.target(self.records[index]), dtype=torch.int64)


# Mixed into the augmentation seeds' generator, so that they are not the draws of a sampler that
# seeds its own generator with the same [seed, epoch] (ClassBalancedSampler does).
_AUG_STREAM = 0xA06


def aug_seeds(seed: int, epoch: int, n: int) -> np.ndarray:
    """The (n,) augmentation seeds of an epoch's n draws: a function of (seed, epoch, draw position) only."""
    return np.random.default_rng([seed, epoch, _AUG_STREAM]).integers(2**31, size=n)


class AugSeedSampler(Sampler[tuple[int, int]]):
    """Yield (index, aug_seed) for each index another sampler yields, for a `SeededCrops` dataset.

    albumentations 2 draws from generators of its own, which `seed_everything` does not reach; keying
    each draw by a seed fixed by (seed, epoch, position) makes an epoch's augmentations repeat from run
    to run (and on resume) and differ between epochs, whatever the number of DataLoader workers.

    Args:
        sampler: yields dataset indices (class-balanced, shuffled, ...); `set_epoch` is forwarded to it.
        seed: the run seed.
    """

    def __init__(self, sampler: Sampler[int], seed: int) -> None:
        # `inner`, not `sampler`: `set_data_epoch` looks for `.sampler` and would set the epoch twice.
        self.inner, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (forwarded to the wrapped sampler)."""
        self.epoch = epoch
        if callable(getattr(self.inner, "set_epoch", None)):
            self.inner.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = [int(i) for i in self.inner]
        seeds = aug_seeds(self.seed, self.epoch, len(indices))
        self.epoch += 1  # without `set_epoch`, the next iter() is the next epoch (as ClassBalancedSampler does)
        return iter(zip(indices, seeds.tolist(), strict=True))


class SeededCrops(Dataset):
    """Crops keyed by (index, aug_seed), as `AugSeedSampler` and the embedder's samplers yield them.

    Args:
        crops: a dataset of (image (3, S, S), label) pairs (CropDatasets) whose transform is `transform`.
        transform: the albumentations Compose the crops use (shared object), re-seeded before each crop.

    `dataset[(index, aug_seed)]` is `crops[index]` augmented from a generator seeded with aug_seed.
    """

    def __init__(self, crops: Dataset, transform: Any) -> None:
        self.crops, self.transform = crops, transform

    def __len__(self) -> int:
        return len(self.crops)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, aug_seed = key
        self.transform.set_random_seed(aug_seed)
        return self.crops[index]
