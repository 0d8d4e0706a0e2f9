"""Helpers for the retrieval tests: a tiny generated split and a fast, call-counting feature extractor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagesearch.features.extract import CropFeatures, FeatureConfig, LBPConfig
from imagesearch.synthetic import SyntheticConfig, generate_split

TINY = SyntheticConfig(frames=81, width=136, height=240, image_size=200, workers=1)


def make_tiny_split(root: Path, items: int = 3, seed: int = 1) -> Path:
    """A deterministic synthetic split: `items` items and videos, 81-frame 136x240 clips, 200 px images."""
    return generate_split(root, items, seed, TINY)


def colour_features(crops: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
    """A cheap global feature: the mean and std of each RGB channel, L2-normalised. (N, 6)."""
    rows = [np.concatenate([c.reshape(-1, 3).mean(0), c.reshape(-1, 3).std(0)]) for c in crops]
    x = np.asarray(rows, np.float32).reshape(-1, 6) + 1e-3
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fake_extractor(files: Sequence[Path] = (), lbp_weight: float = 0.0, **cfg: object) -> CropFeatures:
    """A `CropFeatures` with `colour_features` as its global part and a small LBP resize."""
    config = FeatureConfig(weights="none", lbp_weight=lbp_weight, lbp=LBPConfig(resize=32), **cfg)  # type: ignore[arg-type]
    return CropFeatures(colour_features, config, files)
