"""Trained stages as the evaluation uses them: a feature extractor, a crop classifier, a detector.

These adapters are where a stage's checkpoint meets the pure feature and matching code: `features/`
and `matching/` import no stage, and the stages import no evaluation code.

- `build_extractor(features_cfg)`: the `CropFeatures` of `features.kind` ("imagenet_vgg16" from
  `features.extract`, "embedder" from a trained embedder checkpoint, with the crop geometry it was
  trained with);
- `CropClassifier`: a trained classifier on garment boxes -> category names, for the matcher's
  category-consistency filter; it cuts boxes by the features' own crop paths (`CropFeatures.box_parts`),
  so product-image and frame boxes are classified from crops cut alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from imagesearch.checkpoint import load_checkpoint
from imagesearch.data.labels import CATEGORIES
from imagesearch.features.extract import (
    CROP_MARGIN,
    CROP_MAX_SIDE,
    CropFeatures,
    FeatureConfig,
    GlobalFeature,
    TorchCrops,
    check_feature_config,
    imagenet_vgg16,
)
from imagesearch.features.roi import CROP_PATHS

__all__ = ["FEATURE_KINDS", "CropClassifier", "build_extractor", "embedder_feature"]

FeatureBuilder = Callable[[FeatureConfig], tuple[GlobalFeature, list[Path], tuple[float, int]]]


def embedder_feature(cfg: FeatureConfig) -> tuple[GlobalFeature, list[Path], tuple[float, int]]:
    """A trained embedder (`features.checkpoint`) as a global feature, with the file it reads and the crop
    geometry (margin, max_side) it was trained with (its run's `data` section)."""
    from imagesearch.embedder import load_model

    path = Path(cfg.checkpoint).expanduser()
    if not cfg.checkpoint or not path.is_file():
        raise FileNotFoundError(f"features.checkpoint: embedder checkpoint not found: {cfg.checkpoint!r}")
    embedder, model_cfg = load_model(str(path))
    data = (load_checkpoint(path).get("config") or {}).get("data") or {}
    geometry = (float(data.get("margin", CROP_MARGIN)), int(data.get("max_side", CROP_MAX_SIDE)))
    # The embedder's forward is `Embedder.embed_crops` without its per-crop loop: same resize (its own
    # image_size), same normalisation, eval mode; it L2-normalises inside.
    runner = TorchCrops(embedder, model_cfg.image_size, cfg.batch_size, cfg.device, cfg.amp, cfg.channels_last)
    return GlobalFeature(runner, lambda y: y, "features: embedder"), [path], geometry


def _imagenet(cfg: FeatureConfig) -> tuple[GlobalFeature, list[Path], tuple[float, int]]:
    return (*imagenet_vgg16(cfg), (CROP_MARGIN, CROP_MAX_SIDE))


FEATURE_KINDS: dict[str, FeatureBuilder] = {"imagenet_vgg16": _imagenet, "embedder": embedder_feature}


def build_extractor(cfg: FeatureConfig) -> CropFeatures:
    """The extractor named by `cfg.kind`.

    Raises:
        ValueError: an unknown kind, or settings no kind accepts (`check_feature_config`).
        FileNotFoundError: a weights file or checkpoint that does not exist (with how to make it).
    """
    if cfg.kind not in FEATURE_KINDS:
        raise ValueError(f"features.kind: unknown {cfg.kind!r}; choose one of {sorted(FEATURE_KINDS)}")
    check_feature_config(cfg)
    feature, files, geometry = FEATURE_KINDS[cfg.kind](cfg)
    return CropFeatures(feature, cfg, files, geometry)


class CropClassifier:
    """A trained classifier on garment boxes -> canonical category names (argmax of the 23 logits).

    Args:
        checkpoint: a classifier checkpoint (`scripts/train_classifier.py`).
        batch_size: crops per forward pass.
        device: "auto", "cpu" or "cuda[:i]".
        crop_path: how `box_labels` cuts boxes: "roi_align" (on the device, one batched call) or "cpu"
            (`cut_crop` per box), as `features.crops` does for the features.
    """

    def __init__(
        self, checkpoint: str | Path, batch_size: int = 64, device: str = "auto", crop_path: str = "cpu"
    ) -> None:
        from imagesearch.classifier import load_model

        if crop_path not in CROP_PATHS:
            raise ValueError(f"classifier crop path: unknown {crop_path!r}; choose one of {CROP_PATHS}")
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"classifier.checkpoint: classifier checkpoint not found: {self.checkpoint}")
        model, cfg = load_model(self.checkpoint)
        if cfg.num_classes != len(CATEGORIES):
            raise ValueError(f"{self.checkpoint}: expected a {len(CATEGORIES)}-class classifier, got {cfg.num_classes}")
        self.crop_path = crop_path
        self.runner = TorchCrops(model, cfg.image_size, batch_size, device)  # the model and its batching
        # The logits as a global feature without an LBP part, so boxes are cut by the features' own paths.
        logits = GlobalFeature(self.runner, _identity, "classify")
        self._logits = CropFeatures(logits, FeatureConfig(batch_size=batch_size, crops=crop_path, lbp_weight=0.0), [])

    def box_logits(
        self, images: Sequence[np.ndarray], owners: np.ndarray, boxes: np.ndarray, margin: float, max_side: int
    ) -> np.ndarray:
        """(K, 23) logits of boxes of images, cut by `crop_path` as `CropFeatures.box_parts` cuts them."""
        if len(boxes) == 0:
            return np.zeros((0, len(CATEGORIES)), np.float32)
        return self._logits.box_parts(images, owners, boxes, margin, max_side, names=("global",))["global"]

    def box_labels(
        self, images: Sequence[np.ndarray], owners: np.ndarray, boxes: np.ndarray, margin: float, max_side: int
    ) -> list[str]:
        """One canonical category name per box (see `box_logits`)."""
        return [CATEGORIES[int(i)] for i in self.box_logits(images, owners, boxes, margin, max_side).argmax(axis=1)]


def _identity(y: torch.Tensor) -> torch.Tensor:
    return y
