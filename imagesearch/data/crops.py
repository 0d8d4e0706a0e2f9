"""Garment crops of a split: the training and evaluation unit of the classifier and the embedder.

Decoding a video to cut ten annotated frames is the slow part of every epoch, so crops are cut
once (`extract_crops`) into a cache folder of JPEGs with a `crops.jsonl` index, and datasets read
those. One cache serves both stages: it holds every annotated garment, distractors (instance_id 0)
included, and `include_distractors` only filters the records returned. Layout:

    <cache_root>/<key>/            key: 12 hex of the split's annotations, margin, max_side and CACHE_VERSION
      meta.json                    {"version", "split", "margin", "max_side"}, for `imagesearch.caches`
      crops.jsonl                  one `CropRecord` per line; written last and atomically
      img/<shard>/<name>.jpg       shard "0000", "0001", ...: the crops in index order, `shard_cap` per folder

A name says where the crop is from: `i_<item>_<image stem>_<box>.jpg`, `v_<video>_<frame>_<box>.jpg`.
Crops are cut by tasks, one per source (a video: all its annotated frames in one decoding pass; an
item: its product images), in worker processes or in turn; the records keep the task order, so
the index is the same whatever the worker count. Each crop file is written atomically, and the index
last: a folder without it is an interrupted build, which the next call resumes (the sources whose
crops are all on disk are not cut again). Version 1 caches (one flat `img/`, distractors in the key)
are never read: their key differs.

Training crops are augmented from a seed carried in the dataset key (`SeededCrops`, fed by
`AugSeedSampler` or the embedder's samplers), so augmentation repeats with the run seed.
"""

from __future__ import annotations

import functools
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
from imagesearch.io import atomic_write, atomic_write_text
from imagesearch.parallel import map_in_processes
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

INDEX_NAME = "crops.jsonl"
CACHE_VERSION = 2  # 2: distractors always cut, sharded img/ folders
SHARD_CAP = 10_000  # crop files per img/ folder


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


def cache_key(split: Split, margin: float, max_side: int) -> str:
    """A short hash of what decides the crops, so a changed split or setting never reuses a stale cache."""
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_VERSION, str(split.root.resolve()), margin, max_side]).encode())
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
    # Atomic, so that a file on disk is a whole crop: a resumed build trusts the files it finds.
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.tobytes()))


@dataclass(frozen=True)
class CropTask:
    """The crops of one source, cut by one worker.

    Attributes:
        video: the video file, whose annotated frames are decoded in one pass; "" for product images.
        pictures: per picture (a frame index of `video`, or a product image's path), the records of its
            crops, one per annotated box, with the files they go to.
    """

    video: str
    pictures: tuple[tuple[int | str, tuple[CropRecord, ...]], ...]


def plan_crop_tasks(split: Split, shard_cap: int = SHARD_CAP) -> tuple[list[CropTask], int]:
    """Every annotated garment of a split as tasks (one per item, then one per present video), in index order.

    Args:
        split: a loaded split.
        shard_cap: crop files per `img/` shard folder; the n-th crop goes to shard n // shard_cap.

    Returns:
        (the tasks, the number of annotated videos that are missing and so give no task).
    """
    if shard_cap < 1:
        raise ValueError(f"shard_cap must be >= 1, got {shard_cap}")
    count = 0

    def file(name: str) -> str:
        nonlocal count
        count += 1
        return f"img/{(count - 1) // shard_cap:04d}/{name}.jpg"

    tasks = []
    for item in split.items.values():
        images = tuple(
            (str(im.path), tuple(_record(file(f"i_{im.item_id}_{im.stem}_{j}"), "image", box, split, img_name=im.img_name)
                                 for j, box in enumerate(im.boxes)))
            for im in item.images if im.boxes
        )  # fmt: skip
        if images:
            tasks.append(CropTask("", images))
    missing = 0
    for video in split.videos.values():
        annotated = [f for f in video.frames if f.boxes]
        if not annotated or not video.present:
            missing += bool(annotated)
            continue
        frames = tuple(
            (f.frame_index, tuple(_record(file(f"v_{video.video_id}_{f.frame_index}_{j}"), "frame", box, split,
                                          video_id=video.video_id, frame_index=f.frame_index)
                                  for j, box in enumerate(f.boxes)))
            for f in annotated
        )  # fmt: skip
        tasks.append(CropTask(str(video.path), frames))
    return tasks, missing


def cut_task(folder: Path, margin: float, max_side: int, task: CropTask) -> tuple[list[CropRecord], str]:
    """Cut and write one task's crops (each worker's job); a task whose files all exist is not cut again.

    Args:
        folder: the cache folder.
        margin, max_side: as in `extract_crops`.
        task: from `plan_crop_tasks`.

    Returns:
        (the records of the crops on disk, in task order; what was left out and why, "" when nothing).
    """
    from imagesearch.data.video import VideoError, read_frames  # decoding is only needed here

    planned = [r for _, records in task.pictures for r in records]
    if all((folder / r.file).is_file() for r in planned):
        return planned, ""
    images: list[np.ndarray | None]
    if task.video:
        try:
            images = list(read_frames(task.video, [int(p) for p, _ in task.pictures]))
        except VideoError as exc:
            return [], f"{exc}; its crops are left out"
    else:
        images = []
        for path, _ in task.pictures:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            images.append(None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    written, problems = [], []
    for (where, records), rgb in zip(task.pictures, images, strict=True):
        if rgb is None:
            problems.append(f"cannot read product image {where}; its crops are left out")
            continue
        for r in records:
            _write_jpeg(folder / r.file, cut_crop(rgb, r.box, margin, max_side))
            written.append(r)
    return written, "; ".join(problems)


def _cut_all(
    tasks: Sequence[CropTask], cut: Callable[[CropTask], tuple[list[CropRecord], str]], workers: int, progress: bool
) -> list[tuple[list[CropRecord], str]]:
    """`cut` of every task, in task order, by `workers` spawned processes (0 or 1: in this process)."""
    bar = progress_bar(total=len(tasks), enabled=progress, desc="crops", unit="source")
    try:
        return map_in_processes(cut, tasks, workers, on_done=bar.update)
    finally:
        bar.close()


def extract_crops(
    split: Split,
    cache_root: str | Path,
    margin: float = 0.1,
    max_side: int = 256,
    include_distractors: bool = False,
    workers: int = 0,
    progress: bool = True,
    shard_cap: int = SHARD_CAP,
) -> tuple[Path, list[CropRecord]]:
    """Cut every annotated garment of a split into a cache folder, once (see the module docstring).

    Args:
        split: a loaded split (`imagesearch.data.reader.load_split`).
        cache_root: parent folder; crops go to `<cache_root>/<key>/` where key hashes the split
            and the crop geometry (margin, max_side), so every stage that cuts alike shares the folder.
        margin: box growth on each side, as a fraction of the box size.
        max_side: longer side of a stored crop, in pixels (larger crops are shrunk).
        include_distractors: also return garments with instance_id 0 (the classifier may train on them);
            the cache holds them either way.
        workers: processes cutting the crops, one source at a time each; 0 or 1 cuts in this process.
        progress: show a tqdm bar over the sources.
        shard_cap: crop files per `img/` shard folder (used when the cache is built).

    Returns:
        (the cache folder, the crop records in index order). Videos and product images that are missing
        or cannot be read are logged and left out; their crops are simply absent.
    """
    folder = Path(cache_root) / cache_key(split, margin, max_side)
    index = folder / INDEX_NAME
    if index.is_file():
        records = load_crop_index(folder)
    else:
        records = _build(split, folder, margin, max_side, workers, progress, shard_cap)
    return folder, records if include_distractors else [r for r in records if r.instance_id > 0]


def _build(
    split: Split, folder: Path, margin: float, max_side: int, workers: int, progress: bool, shard_cap: int
) -> list[CropRecord]:
    tasks, missing = plan_crop_tasks(split, shard_cap)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    records: list[CropRecord] = []
    unreadable = 0
    for written, problem in _cut_all(tasks, functools.partial(cut_task, folder, margin, max_side), workers, progress):
        records.extend(written)
        if problem:
            log.warning("%s", problem)
            unreadable += 1
    if missing or unreadable:
        log.info(
            "crops: %d annotated videos missing, %d sources unreadable (all or part); left out", missing, unreadable
        )
    # What made this folder, for `imagesearch.caches` (listing and pruning); nothing reads it back here.
    meta = {"version": CACHE_VERSION, "split": str(split.root.resolve()), "margin": margin, "max_side": max_side}
    atomic_write_text(folder / "meta.json", json.dumps(meta) + "\n")
    atomic_write_text(folder / INDEX_NAME, "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records))
    return records


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
