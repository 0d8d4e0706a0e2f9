"""A trained classifier on garment crops, for the matcher's category filter (SPEC §3 stages 4 and 7).

It takes boxes of images (`box_logits` / `box_labels`, the `matching.gallery.LabelsBoxes` that the
gallery and the matcher call) and cuts them by the same two paths as the features (`features.crops`:
one batched `roi_align` call on the device, or `cut_crop` per box on the CPU), so product-image and
frame boxes are classified from crops cut alike, and never cut on the CPU just for the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from imagesearch.data.labels import CATEGORIES
from imagesearch.features.extract import CropFeatures, FeatureConfig, GlobalFeature, TorchCrops
from imagesearch.features.roi import CROP_PATHS

__all__ = ["CropClassifier"]


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
        from imagesearch.classifier.model import load_classifier  # a trained stage: imported only when used

        if crop_path not in CROP_PATHS:
            raise ValueError(f"classifier crop path: unknown {crop_path!r}; choose one of {CROP_PATHS}")
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"classifier.checkpoint: classifier checkpoint not found: {self.checkpoint}")
        model, cfg = load_classifier(self.checkpoint)
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
        return self._names(self.box_logits(images, owners, boxes, margin, max_side))

    @staticmethod
    def _names(logits: np.ndarray) -> list[str]:
        return [CATEGORIES[int(i)] for i in logits.argmax(axis=1)]


def _identity(y: torch.Tensor) -> torch.Tensor:
    return y
