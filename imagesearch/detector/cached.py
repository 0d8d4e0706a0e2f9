"""Detector training on cached trunk outputs: a frozen VGG16 trunk, small data, a CPU.

With the whole trunk frozen (`model.freeze_blocks: 5`) its outputs for a given augmented image never
change during training, yet they are about 80% of SSD300's forward cost (VGG16 to conv5_3 at 300 px:
~28 GMAC of ~35 with the added layers' backward). `data.cached_views: K` draws K augmented views of
every training image once (the usual box-aware transform, seeded per image and view), runs the trunk on
each, and keeps the conv4_3 and conv5_3 maps (float16) with the view's boxes. Training then runs the
added layers and the heads alone, each draw taking one of its image's K views at random, so an epoch
costs about a fifth of a live one; the K views bound the augmentation's variety (K = 8 to 16 on a small
sample). The views are stored on disk per image, keyed by the image file, the trunk weights, the
transform settings, K and the seed, so folds and reruns that share images compute them once.

Memory: about 1.9 MB per view at 300 px (float16), all held in RAM while training: meant for a sample
of a few hundred images on a CPU, not for a full training part (use live augmentation there: 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Sampler
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from imagesearch.backbones import VGG16_MEAN, VGG16_STD
from imagesearch.checkpoint import save_checkpoint
from imagesearch.data.augment import AugmentConfig
from imagesearch.detector.data import DetectionDataset
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

__all__ = ["TrunkViews", "ViewSampler", "cached_forward", "collate_views", "compute_views", "ssd_losses"]

VIEWS_VERSION = 1


def _view_seed(seed: int, path: str, view: int) -> int:
    digest = hashlib.sha1(f"{seed}:{path}:{view}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _sample_key(path: str, boxes: Any, settings: dict[str, Any]) -> str:
    st = Path(path).stat()
    raw = json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, boxes, settings], sort_keys=True)
    return hashlib.sha1(raw.encode()).hexdigest()[:20]


def _normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(VGG16_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(VGG16_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


@torch.no_grad()
def _trunk_views(model: nn.Module, dataset: DetectionDataset, index: int, views: int, seed: int, batch: int) -> dict[str, Any]:  # fmt: skip
    device = next(model.parameters()).device
    path = dataset.samples[index].path
    images, targets = [], []
    for v in range(views):
        dataset.transform.set_random_seed(_view_seed(seed, path, v))
        image, target = dataset[index]
        images.append(image)
        targets.append(target)
    conv4, conv5 = [], []
    for start in range(0, views, batch):
        x = _normalise(torch.stack(images[start : start + batch]).to(device))
        c4, c5 = model.backbone.trunk(x)
        conv4.append(c4.half().cpu().contiguous())
        conv5.append(c5.half().cpu().contiguous())
    return {"conv4": torch.cat(conv4), "conv5": torch.cat(conv5), "targets": targets}


def compute_views(
    model: nn.Module,
    dataset: DetectionDataset,
    views: int,
    seed: int,
    cache_dir: str | Path,
    weights_id: str,
    augment: AugmentConfig,
    batch: int = 8,
    progress: bool = True,
) -> TrunkViews:
    """The trunk outputs of `views` augmented views of every sample of `dataset`, read from or added to the cache.

    Args:
        model: the SSD (its `backbone.trunk` is run in eval mode, without gradients).
        dataset: the training `DetectionDataset` (its transform makes the views; its size is the model's).
        views: K views per image.
        seed: the views of an image are a function of (seed, image path, view index).
        cache_dir: parent folder of the per-image view files.
        weights_id: what identifies the trunk's weights (a file fingerprint), part of each file's key.
        augment: the transform's settings, part of each file's key.
        batch: views per trunk pass.
        progress: a tqdm bar.

    Returns:
        The `TrunkViews`.
    """
    if views < 1:
        raise ValueError(f"data.cached_views must be >= 1 to cache views, got {views}")
    settings = {"version": VIEWS_VERSION, "views": views, "seed": seed, "weights": weights_id,
                "augment": asdict(augment), "classes": dataset.classes}  # fmt: skip
    was_training = model.training
    model.eval()
    folder = Path(cache_dir)
    conv4, conv5, targets = [], [], []
    built = 0
    for i in progress_bar(range(len(dataset)), enabled=progress, desc="detector: trunk views"):
        sample = dataset.samples[i]
        file = folder / f"{_sample_key(sample.path, sample.boxes, settings)}.pt"
        if file.is_file():
            got = torch.load(file, map_location="cpu", weights_only=True)
        else:
            got = _trunk_views(model, dataset, i, views, seed, batch)
            save_checkpoint(file, got)  # atomic: a run stopped mid-way leaves no half file
            built += 1
        conv4.append(got["conv4"])
        conv5.append(got["conv5"])
        targets.append(got["targets"])
    model.train(was_training)
    log.info("detector: %d x %d trunk views (%d images computed, %d from %s)", len(dataset), views, built,
             len(dataset) - built, folder)  # fmt: skip
    return TrunkViews(conv4, conv5, targets)


class TrunkViews(Dataset):
    """Cached trunk outputs; item (image i, view v) -> (conv4 (C4, h4, w4), conv5 (C5, h5, w5), target)."""

    def __init__(self, conv4: list[Tensor], conv5: list[Tensor], targets: list[list[dict[str, Tensor]]]) -> None:
        self.conv4, self.conv5, self.targets = conv4, conv5, targets

    def __len__(self) -> int:
        return len(self.conv4)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        i, v = key
        return self.conv4[i][v], self.conv5[i][v], self.targets[i][v]


class ViewSampler(Sampler[tuple[int, int]]):
    """Turns an image sampler's draws into (image, view) keys, the view drawn per (seed, epoch, draw)."""

    def __init__(self, images: Sampler[int], views: int, seed: int = 0) -> None:
        self.images, self.views, self.seed, self.epoch = images, views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if callable(getattr(self.images, "set_epoch", None)):
            self.images.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draws = list(iter(self.images))
        chosen = np.random.default_rng([self.seed, self.epoch]).integers(0, self.views, size=len(draws))
        self.epoch += 1
        return iter([(int(i), int(v)) for i, v in zip(draws, chosen, strict=True)])


def collate_views(batch: Sequence[tuple[Tensor, Tensor, dict[str, Tensor]]]) -> tuple[Tensor, Tensor, list[dict[str, Tensor]]]:  # fmt: skip
    conv4, conv5, targets = zip(*batch, strict=True)
    return torch.stack(conv4), torch.stack(conv5), list(targets)


def ssd_losses(model: nn.Module, features: list[Tensor], targets: list[dict[str, Tensor]], size: int) -> dict[str, Tensor]:  # fmt: skip
    """SSD's training losses from its feature maps, for targets in the (size x size) input's pixels.

    The steps of torchvision's `SSD.forward` after its backbone (head, anchors, matching, `compute_loss`),
    which that method does not expose apart from the image transform and the backbone.
    """
    head_outputs = model.head(features)
    # The anchor generator reads only the input's size, dtype and device: a zero-stride view stands in.
    images = ImageList(features[0].new_zeros(()).expand(len(targets), 3, size, size), [(size, size)] * len(targets))
    anchors = model.anchor_generator(images, features)
    matched = []
    for anchors_i, target in zip(anchors, targets, strict=True):
        if target["boxes"].numel() == 0:
            matched.append(torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device))
        else:
            matched.append(model.proposal_matcher(box_iou(target["boxes"], anchors_i)))
    return model.compute_loss(targets, head_outputs, anchors, matched)


def cached_forward(model: nn.Module, batch: tuple[Tensor, Tensor, list[dict[str, Tensor]]], device: torch.device) -> dict[str, Tensor]:  # fmt: skip
    """Engine hook: cached (conv4, conv5, targets) -> SSD's loss dict {bbox_regression, classification}."""
    conv4, conv5, targets = batch
    backbone = model.backbone
    dtype = next(p for p in backbone.extra.parameters()).dtype
    features = backbone.from_trunk(conv4.to(device, dtype, non_blocking=True), conv5.to(device, dtype, non_blocking=True))
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    size = int(model.transform.fixed_size[0])
    return ssd_losses(model, list(features.values()), targets, size)
