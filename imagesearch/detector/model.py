"""SSD with a VGG16 backbone on torchvision's `SSD` (SPEC §3 stage 3); inference is in `detector.inference`.

torchvision supplies the anchors (`DefaultBoxGenerator`), the heads (`SSDHead`), the matching, the
losses with hard-negative mining and the NMS. What is ours is the feature extractor: it follows
torchvision's module-private `SSDFeatureExtractorVGG` (conv4_3 with L2Norm, fc6/fc7 as dilated
convs, extra layers) but takes its trunk from `backbones.build_vgg16_features`, can put BatchNorm in
the added layers (the original's design), scales its widths for tiny smoke models and adapts the
number of feature maps to the input size. At size 300, width 1 and without BatchNorm it has exactly
torchvision's SSD300 layout, anchors included.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD

from imagesearch.backbones import VGG16_MEAN, VGG16_STD, build_vgg16_features, freeze_module, split_vgg16_features
from imagesearch.data.labels import CATEGORIES, CATEGORY_INDEX

log = logging.getLogger(__name__)

CLASS_MODES = ("garment", "category")
# SSD300's anchor grid as published (torchvision's ssd300_vgg16); used when the feature maps match.
SSD300_MAPS = (38, 19, 10, 5, 3, 1)
SSD300_STEPS = [8, 16, 32, 64, 100, 300]


@dataclass
class DetectorModelConfig:
    """The detector's architecture, weights and post-processing (the `model` section of the YAML).

    Attributes:
        size: input side in pixels; images are resized to size x size (300 = SSD300).
        width_mult: scales every channel width; < 1 only for tiny smoke models (weights "none" or a file
            of the reduced shapes).
        added_width_mult: scales the layers SSD adds to the trunk alone (fc6/fc7's 1024 channels, the extra
            layers); 1 is SSD300. They start random, so on little data fewer channels fit better and train
            faster (0.25: fc6 costs 0.43 instead of 1.7 GMAC at 300 px).
        weights: VGG16 trunk weights: "none", a torchvision enum name (downloads) or a local file.
        trunk_batch_norm: the VGG16-BN trunk layout (plain VGG16 weights still load, conv by conv);
            trains much faster from random init, so the smoke config uses it.
        classes: "garment" (one foreground class for every label, the original design) or "category" (23).
        extra_batch_norm: BatchNorm before each conv of the extra layers (conv8_1 ... conv11_2).
        freeze_blocks: VGG16 conv blocks frozen from the input side: 0 none ... 5 the whole trunk.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: SSD's post-processing.
        anchor_scales: K + 1 default-box scales (fractions of the side) for the K feature maps; empty
            for SSD300's rule (`build_anchor_generator`). With few maps (small inputs) that rule leaves
            big gaps between scales; a list fitted to the data's box sizes matches more anchors per box.
        iou_thresh: anchor-to-box IoU above which an anchor is a positive in training.
        neg_pos_ratio: hard negatives kept per positive in the classification loss (SSD paper: 3).
        channels_last: run the backbone in channels-last memory format (faster convolutions with
            oneDNN on CPU and with tensor cores under AMP on CUDA; same numbers up to rounding).
    """

    size: int = 300
    width_mult: float = 1.0
    added_width_mult: float = 1.0
    weights: str = "none"
    trunk_batch_norm: bool = False
    classes: str = "garment"
    extra_batch_norm: bool = True
    freeze_blocks: int = 0
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    detections_per_img: int = 200
    topk_candidates: int = 400
    anchor_scales: list[float] = field(default_factory=list)
    iou_thresh: float = 0.5
    neg_pos_ratio: float = 3.0
    channels_last: bool = True


def num_classes(classes: str) -> int:
    """Classes of the SSD head, background included: 2 for "garment", 24 for "category"."""
    if classes == "garment":
        return 2
    if classes == "category":
        return len(CATEGORIES) + 1
    raise ValueError(f"model.classes: {classes!r} is not one of {CLASS_MODES}")


def label_of(category: str, classes: str) -> int:
    """The SSD label (1-based; 0 is background) of a canonical category name."""
    return 1 if classes == "garment" else CATEGORY_INDEX[category] + 1


def label_names(classes: str) -> list[str]:
    """Name of each SSD label, index = label: ["background", "garment"] or ["background", *CATEGORIES]."""
    return ["background", "garment"] if classes == "garment" else ["background", *CATEGORIES]


def _pool_out(n: int, pool: nn.MaxPool2d) -> int:
    k, s, p = (v if isinstance(v, int) else v[0] for v in (pool.kernel_size, pool.stride, pool.padding))
    rounding = math.ceil if pool.ceil_mode else math.floor
    return int(rounding((n + 2 * p - k) / s)) + 1


def _extra_plan(fmap: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of each extra block, from the fc7 map side down to 1x1.

    SSD300's rule (19 -> 10 -> 5 -> 3 -> 1): stride-2 3x3 convs while the map is >= 6, then
    unpadded 3x3 convs, and a 2x2 one for a 2x2 map.
    """
    plan = []
    while fmap > 1:
        if fmap >= 6:
            kernel, stride, pad = 3, 2, 1
        elif fmap >= 3:
            kernel, stride, pad = 3, 1, 0
        else:
            kernel, stride, pad = 2, 1, 0
        plan.append((kernel, stride, pad))
        fmap = (fmap + 2 * pad - kernel) // stride + 1
    return plan


def _conv_block(cin: int, cout: int, bn: bool, **conv: Any) -> list[nn.Module]:
    # BatchNorm on the conv's input, not its output: the last extra conv outputs 1x1 maps, where a
    # BatchNorm would see one value per image (and fail on a batch of one).
    layers: list[nn.Module] = [nn.BatchNorm2d(cin)] if bn else []
    return [*layers, nn.Conv2d(cin, cout, **conv), nn.ReLU(inplace=True)]


class SSDVGG16Backbone(nn.Module):
    """VGG16 feature extractor for SSD: conv4_3 (L2Norm-rescaled), fc7 and extra layers.

    Args:
        trunk: a `vgg16().features`-layout trunk (from `build_vgg16_features`); its pool3 is switched
            to ceil mode (38x38 conv4_3 maps at 300, as in the paper) and pool5 is dropped.
        size: the input side, which decides the number of extra layers (`_extra_plan`).
        width_mult: scales fc6/fc7 (1024) and the extra layers (256/512, 128/256).
        batch_norm: BatchNorm on the input of each conv of the extra layers (the original's design).
        channels_last: convert the input to channels-last memory format (the weights should be too).

    Forward: (N, 3, size, size) normalised RGB -> OrderedDict of feature maps "0".."K-1", conv4_3
    first; `out_channels` lists their channels and `feature_sizes` their sides.
    """

    def __init__(
        self,
        trunk: nn.Sequential,
        size: int,
        width_mult: float = 1.0,
        batch_norm: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        pools = [m for m in trunk if isinstance(m, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"expected a VGG16 trunk with 5 max-pools, got {len(pools)}")
        pools[2].ceil_mode = True  # the paper's 38x38 conv4_3 maps at 300 (torchvision patches it the same way)
        self.features, conv5 = split_vgg16_features(trunk)
        c4 = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        c5 = [m for m in conv5 if isinstance(m, nn.Conv2d)][-1].out_channels
        side = size
        for pool in pools[:3]:
            side = _pool_out(side, pool)
        sides = [side, _pool_out(side, pools[3])]  # conv4_3, then fc7 (pool5 keeps the side)
        if sides[-1] < 1:
            raise ValueError(f"model.size={size} is too small for VGG16's strides (needs >= 16)")

        def width(c: int) -> int:
            return max(1, round(c * width_mult))

        self.scale_weight = nn.Parameter(torch.ones(c4) * 20)  # L2Norm's learned scale, init 20 (paper)
        fc_ch = width(1024)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5 replaced: keeps the side
            *_conv_block(c5, fc_ch, False, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            *_conv_block(fc_ch, fc_ch, False, kernel_size=1),  # fc7
        )
        self.n_conv5 = len(conv5)  # extra[0] = conv5 (pool4 .. conv5_3 ReLU), then the fc layers
        blocks = [nn.Sequential(*conv5, fc)]
        channels = [c4, fc_ch]
        for i, (kernel, stride, pad) in enumerate(_extra_plan(sides[-1])):
            mid, out = (width(256), width(512)) if i == 0 else (width(128), width(256))
            blocks.append(
                nn.Sequential(
                    *_conv_block(channels[-1], mid, batch_norm, kernel_size=1),
                    *_conv_block(mid, out, batch_norm, kernel_size=kernel, stride=stride, padding=pad),
                )
            )
            channels.append(out)
            sides.append((sides[-1] + 2 * pad - kernel) // stride + 1)
        self.extra = nn.ModuleList(blocks)
        pretrained = {id(m) for m in conv5.modules()}
        for m in self.extra.modules():  # the added layers start as torchvision's SSD starts them
            if isinstance(m, nn.Conv2d) and id(m) not in pretrained:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.out_channels = channels
        self.feature_sizes = sides

    def trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The VGG16 trunk alone: (N, 3, S, S) -> conv4_3 maps (N, C4, S/8, S/8) and conv5_3 maps (N, C5, S/16, S/16).

        With the whole trunk frozen (`freeze_blocks` 5) these do not change during training, so they can
        be computed once per augmented view (`detector.cached`).
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        conv4 = self.features(x)
        return conv4, self.extra[0][: self.n_conv5](conv4)

    def from_trunk(self, conv4: Tensor, conv5: Tensor) -> dict[str, Tensor]:
        """The SSD feature maps from the trunk's outputs (see `trunk`): what `forward` returns."""
        outputs = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(conv4)]
        x = self.extra[0][self.n_conv5 :](conv5)
        outputs.append(x)
        for block in self.extra[1:]:
            x = block(x)
            outputs.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(outputs))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.from_trunk(*self.trunk(x))

    def trunk_state_dict(self) -> dict[str, Tensor]:
        """The VGG16 trunk's weights in torchvision's `vgg16().features` layout (`vgg16_bn()` for a BN trunk):
        what the detector hands to the stages that start from its trunk (`trunk.pth`, read as `weights`)."""
        cut = len(self.features)
        state = {k: v.detach().clone() for k, v in self.features.state_dict().items()}
        for key, value in self.extra[0][: self.n_conv5].state_dict().items():
            index, name = key.split(".", 1)
            state[f"{cut + int(index)}.{name}"] = value.detach().clone()
        return state


def build_anchor_generator(feature_sizes: Sequence[int], scales: Sequence[float] = ()) -> DefaultBoxGenerator:
    """SSD default boxes for K feature maps, from SSD300's scheme.

    Scales (unless given, K + 1 of them): 0.07 for the first map, then evenly from 0.15 to 0.87, and
    1.05 for the last map's extra box; aspect ratios {2} on the first and last two maps, {2, 3}
    between; steps: SSD300's published ones for its six 38..1 maps, else the map's own grid. For K = 6
    at 300 this is torchvision's SSD300.
    """
    k = len(feature_sizes)
    if k < 2:
        raise ValueError(f"SSD needs at least 2 feature maps, got {list(feature_sizes)}")
    if scales and len(scales) != k + 1:
        raise ValueError(
            f"model.anchor_scales: {k} feature maps {list(feature_sizes)} need {k + 1} scales, got {list(scales)}"
        )
    scales = list(scales) or [0.07, *np.linspace(0.15, 0.87, k - 1).round(6).tolist(), 1.05]
    ratios = [[2] if i == 0 or i >= k - 2 else [2, 3] for i in range(k)]
    steps = SSD300_STEPS if tuple(feature_sizes) == SSD300_MAPS else None
    return DefaultBoxGenerator(ratios, scales=scales, steps=steps)


def build_detector(cfg: DetectorModelConfig) -> SSD:
    """Build the SSD detector of `cfg`: our VGG16 backbone, torchvision's anchors, head, losses and NMS.

    Args:
        cfg: the model section; `cfg.weights` loads the VGG16 trunk (a mismatched file raises
            `backbones.WeightsError` naming its missing / unexpected keys).

    Returns:
        A torchvision `SSD`. Train mode: `model(images, targets) -> {"bbox_regression", "classification"}`;
        eval mode: `model(images) -> [{"boxes" (K, 4), "scores" (K,), "labels" (K,)}]`, boxes in the input
        image's pixels. `images` are (3, H, W) RGB floats in 0-1 of any size (resized to cfg.size).
    """
    if not 0 <= cfg.freeze_blocks <= 5:
        raise ValueError(f"model.freeze_blocks must be in 0..5, got {cfg.freeze_blocks}")
    trunk = build_vgg16_features(weights=cfg.weights, batch_norm=cfg.trunk_batch_norm, width_mult=cfg.width_mult)
    if cfg.freeze_blocks and str(cfg.weights).lower() == "none":
        log.warning("model.freeze_blocks=%d with weights 'none' freezes random layers", cfg.freeze_blocks)
    freeze_module(trunk, cfg.freeze_blocks)
    if cfg.added_width_mult <= 0:
        raise ValueError(f"model.added_width_mult must be > 0, got {cfg.added_width_mult}")
    added = cfg.width_mult * cfg.added_width_mult
    backbone = SSDVGG16Backbone(trunk, cfg.size, added, cfg.extra_batch_norm, cfg.channels_last)
    model = SSD(
        backbone,
        build_anchor_generator(backbone.feature_sizes, cfg.anchor_scales),
        (cfg.size, cfg.size),
        num_classes(cfg.classes),
        image_mean=list(VGG16_MEAN),
        image_std=list(VGG16_STD),
        score_thresh=cfg.score_thresh,
        nms_thresh=cfg.nms_thresh,
        detections_per_img=cfg.detections_per_img,
        iou_thresh=cfg.iou_thresh,
        topk_candidates=cfg.topk_candidates,
        positive_fraction=1.0 / (1.0 + cfg.neg_pos_ratio),
    )
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def load_detector(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SSD, DetectorModelConfig]:
    """A trained detector from its checkpoint (`checkpoint.load_model`), in eval mode, with its stored config.

    The checkpoint holds every weight: the trunk file is never read again, and freezing is moot at inference.
    """
    from imagesearch.checkpoint import load_model

    offline = lambda cfg: replace(cfg, weights="none", freeze_blocks=0)  # noqa: E731
    return load_model(path, DetectorModelConfig, build_detector, offline, map_location=map_location)
