"""The garment classifier (SPEC §3 stage 4): VGG16-BN trunk, 1x1 neck, three Inception-C blocks, FC.

    image (N, 3, S, S)
      -> trunk: VGG16-BN features up to conv5_3 (pool5 dropped)        (N, 512w, S/16, S/16)
      -> neck: 1x1 conv -> 6*c(256) ch + BN + ReLU (+ 2x2 max-pool)     (N, C, S/32, S/32)
      -> blocks: Inception-C x num_blocks (Szegedy et al. 2016, Fig. 6)  (N, C, S/32, S/32)
      -> pool (global average) -> dropout -> fc                          (N, num_classes)

C = 1536 at full width (6 x 256, the four Inception-C branches). The neck's max-pool stands in for
the dropped pool5, so Inception-C runs at stride 32 (7x7 at 224 input, as Inception-v4 runs it at 8x8).
The trunk is initialised from `weights`: the converted ImageNet VGG16, or the trunk file a trained
detector writes (`<detector run>/trunk.pth`, the same torchvision layout), and frozen by default
(`backbones.freeze_module`: no gradients, BatchNorm running statistics fixed even in train mode).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagesearch.backbones import (
    build_vgg16_features,
    freeze_module,
    trunk_to_conv5_3,
)
from imagesearch.features.pooling import build_pool


@dataclass
class ClassifierModelConfig:
    """Sizes and initialisation of the classifier.

    Attributes:
        weights: VGG16 trunk init: "none", a torchvision enum name ("VGG16_Weights.IMAGENET1K_FEATURES",
            downloads) or a local weights file in torchvision's layout (see `imagesearch.backbones`): the
            converted ImageNet VGG16, or a trained detector's `trunk.pth`. Plain VGG16 convs load into the
            VGG16-BN trunk conv by conv; its BatchNorm layers then keep their fresh init.
        width_mult: trunk width multiplier (tiny smoke models; 1.0 with real weights).
        inception_width_mult: scales the neck and every Inception-C width (256, 384, 448, 512).
        num_blocks: Inception-C blocks (3 in the paper and in ImageSearchV2).
        num_classes: output categories (23).
        freeze_trunk: freeze the trunk (no grad, fixed BN statistics).
        neck_pool: 2x2 max-pool after the neck (stride 16 -> 32).
        pool: global pooling, "avg" | "max" | "gem".
        dropout: before the FC layer.
        image_size: input side in pixels (crops are resized to image_size x image_size).
    """

    weights: str = "none"
    width_mult: float = 1.0
    inception_width_mult: float = 1.0
    num_blocks: int = 3
    num_classes: int = 23
    freeze_trunk: bool = True
    neck_pool: bool = True
    pool: str = "avg"
    dropout: float = 0.0
    image_size: int = 224


def scaled(channels: int, mult: float) -> int:
    """A width times a multiplier, at least 1 (the rounding every scaled width here uses)."""
    return max(1, round(channels * mult))


class ConvBNReLU(nn.Sequential):
    """Conv (no bias, BN follows) + BatchNorm (eps 1e-3, as Inception-v4) + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int]) -> None:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(
            nn.Conv2d(c_in, c_out, (kh, kw), padding=(kh // 2, kw // 2), bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3),
            nn.ReLU(inplace=True),
        )


class InceptionC(nn.Module):
    """Inception-C block of Inception-v4 (8x8 grid module), widths scaled by `width_mult`.

    Branches (full width), every conv followed by BN + ReLU:
      b0: 1x1 256
      b1: 1x1 384 -> {1x3 256, 3x1 256}
      b2: 1x1 384 -> 3x1 448 -> 1x3 512 -> {1x3 256, 3x1 256}
      b3: 3x3 avg-pool (stride 1, padding not counted) -> 1x1 256
    Output channels: 256 + 512 + 512 + 256 = 1536 = 6 * c(256).

    Args:
        in_channels: input channels (the previous block's output, 6 * c(256)).
        width_mult: multiplier of every branch width.

    Shapes: (N, in_channels, H, W) -> (N, 6 * c(256), H, W).
    """

    def __init__(self, in_channels: int, width_mult: float = 1.0) -> None:
        super().__init__()
        c256, c384, c448, c512 = (scaled(c, width_mult) for c in (256, 384, 448, 512))
        self.out_channels = 6 * c256
        self.branch0 = ConvBNReLU(in_channels, c256, 1)
        self.branch1 = ConvBNReLU(in_channels, c384, 1)
        self.branch1_1x3 = ConvBNReLU(c384, c256, (1, 3))
        self.branch1_3x1 = ConvBNReLU(c384, c256, (3, 1))
        self.branch2 = nn.Sequential(
            ConvBNReLU(in_channels, c384, 1), ConvBNReLU(c384, c448, (3, 1)), ConvBNReLU(c448, c512, (1, 3))
        )
        self.branch2_1x3 = ConvBNReLU(c512, c256, (1, 3))
        self.branch2_3x1 = ConvBNReLU(c512, c256, (3, 1))
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), ConvBNReLU(in_channels, c256, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        b1, b2 = self.branch1(x), self.branch2(x)
        return torch.cat(
            [
                self.branch0(x),
                self.branch1_1x3(b1),
                self.branch1_3x1(b1),
                self.branch2_1x3(b2),
                self.branch2_3x1(b2),
                self.branch3(x),
            ],
            dim=1,
        )


class Classifier(nn.Module):
    """VGG16-BN trunk + neck + Inception-C blocks + global pool + FC.

    Attributes:
        trunk: VGG16-BN features up to conv5_3 (frozen when `cfg.freeze_trunk`).
        neck: 1x1 conv to `embed_dim` channels + BN + ReLU (+ 2x2 max-pool).
        blocks: `cfg.num_blocks` Inception-C blocks.
        pool: global pooling (N, C, h, w) -> (N, C).
        fc: (N, C) -> (N, num_classes) logits.
    """

    def __init__(self, trunk: nn.Sequential, cfg: ClassifierModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        trunk_out = [m for m in trunk if isinstance(m, nn.Conv2d)][-1].out_channels
        c_out = 6 * scaled(256, cfg.inception_width_mult)
        self.trunk = trunk
        self.neck = nn.Sequential(*ConvBNReLU(trunk_out, c_out, 1), *([nn.MaxPool2d(2, 2)] if cfg.neck_pool else []))
        self.blocks = nn.Sequential(*(InceptionC(c_out, cfg.inception_width_mult) for _ in range(cfg.num_blocks)))
        self.pool = build_pool(cfg.pool)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c_out, cfg.num_classes)
        self._embed_dim = c_out

    @property
    def embed_dim(self) -> int:
        """Channels C of `forward_features` (1536 at full width)."""
        return self._embed_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """Normalised RGB (N, 3, H, W) -> feature map (N, C, H/32, W/32) (H/16 without `neck_pool`)."""
        return self.blocks(self.neck(self.trunk(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalised RGB (N, 3, H, W) -> logits (N, num_classes)."""
        return self.fc(self.dropout(self.pool(self.forward_features(x))))


def classification_loss(model: nn.Module, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The training loss dict of the classifier: `{"cls": cross_entropy(logits, targets)}`.

    Args:
        images: (N, 3, H, W) normalised RGB.
        targets: (N,) int64 category indices.
    """
    return {"cls": F.cross_entropy(model(images), targets)}


def build_classifier(cfg: ClassifierModelConfig) -> Classifier:
    """Build the classifier, initialise its trunk from `weights` and freeze it.

    Raises:
        FileNotFoundError: a weights file that does not exist.
        WeightsError: a weights file that does not fit the trunk (named in the message).
    """
    if cfg.num_blocks < 0 or cfg.num_classes < 1:
        raise ValueError(f"model: num_blocks ({cfg.num_blocks}) must be >= 0 and num_classes ({cfg.num_classes}) >= 1")
    trunk = trunk_to_conv5_3(build_vgg16_features(cfg.weights, batch_norm=True, width_mult=cfg.width_mult))
    if cfg.freeze_trunk:
        freeze_module(trunk)
    return Classifier(trunk, cfg)


def load_classifier(
    checkpoint_path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Classifier, ClassifierModelConfig]:
    """A trained classifier from a checkpoint of `scripts/train_classifier.py` (`checkpoint.load_model`), in eval
    mode, with its stored config; no weights file is read (the trained weights replace any init)."""
    from imagesearch.checkpoint import load_model

    offline = lambda cfg: replace(cfg, weights="none")  # noqa: E731
    return load_model(checkpoint_path, ClassifierModelConfig, build_classifier, offline, map_location=map_location)
