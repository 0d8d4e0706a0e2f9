"""Detector model pieces worked out by hand: extra-layer plan, anchors, class mapping, freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imagesearch.detector.model import (
    DetectorModelConfig,
    _extra_plan,
    build_anchor_generator,
    build_detector,
    label_names,
    label_of,
    num_classes,
)


def test_extra_plan_follows_ssd300() -> None:
    # SSD300's fc7 is 19x19: two stride-2 convs (19 -> 10 -> 5), then two unpadded 3x3 (5 -> 3 -> 1).
    assert _extra_plan(19) == [(3, 2, 1), (3, 2, 1), (3, 1, 0), (3, 1, 0)]
    assert _extra_plan(6) == [(3, 2, 1), (3, 1, 0)]  # 6 -> 3 -> 1
    assert _extra_plan(4) == [(3, 1, 0), (2, 1, 0)]  # 4 -> 2 -> 1
    assert _extra_plan(1) == []


@pytest.mark.parametrize(
    ("size", "sides"),
    [(300, [38, 19, 10, 5, 3, 1]), (96, [12, 6, 3, 1]), (128, [16, 8, 4, 2, 1]), (64, [8, 4, 2, 1])],
)
def test_feature_maps_per_input_size(size: int, sides: list[int]) -> None:
    # conv4_3 at size / 8 (pool3 rounds up), fc7 at half that, then the extra plan down to 1x1.
    model = build_detector(DetectorModelConfig(size=size, width_mult=1 / 16)).eval()
    assert model.backbone.feature_sizes == sides
    with torch.no_grad():
        maps = model.backbone(torch.zeros(1, 3, size, size))
    assert [tuple(m.shape[-2:]) for m in maps.values()] == [(s, s) for s in sides]
    assert [m.shape[1] for m in maps.values()] == model.backbone.out_channels


def test_anchor_parameters() -> None:
    ssd300 = build_anchor_generator([38, 19, 10, 5, 3, 1])  # torchvision's ssd300_vgg16 values
    assert ssd300.scales == [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
    assert ssd300.aspect_ratios == [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    assert ssd300.steps == [8, 16, 32, 64, 100, 300]
    small = build_anchor_generator([12, 6, 3, 1])
    assert small.scales == [0.07, 0.15, 0.51, 0.87, 1.05] and small.steps is None
    assert small.aspect_ratios == [[2], [2, 3], [2], [2]]
    assert small.num_anchors_per_location() == [4, 6, 4, 4]
    fitted = build_anchor_generator([12, 6, 3, 1], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert fitted.scales == [0.2, 0.4, 0.6, 0.8, 1.0]
    with pytest.raises(ValueError, match=r"anchor_scales: 4 feature maps \[12, 6, 3, 1\] need 5 scales"):
        build_anchor_generator([12, 6, 3, 1], [0.2, 0.4])
    model = build_detector(DetectorModelConfig(size=96, width_mult=1 / 16, anchor_scales=[0.2, 0.4, 0.6, 0.8, 1.0]))
    assert model.anchor_generator.scales == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_class_modes() -> None:
    assert num_classes("garment") == 2 and num_classes("category") == 24
    assert label_of("短裙", "garment") == 1
    assert label_of("短袖上衣", "category") == 1 and label_of("短裙", "category") == 17  # index 16 + 1
    assert label_names("category")[17] == "短裙" and label_names("garment") == ["background", "garment"]
    with pytest.raises(ValueError, match="model.classes"):
        num_classes("garments")


def _trainable(module: nn.Module) -> list[bool]:
    return [p.requires_grad for m in module.modules() if isinstance(m, nn.Conv2d) for p in m.parameters()]


def test_freeze_blocks() -> None:
    model = build_detector(DetectorModelConfig(size=64, width_mult=1 / 16, freeze_blocks=2))
    # Blocks 1-2 hold conv1_1..conv2_2: 4 convs = 8 tensors frozen; conv3_1..conv4_3 train.
    assert _trainable(model.backbone.features) == [False] * 8 + [True] * 12
    model = build_detector(DetectorModelConfig(size=64, width_mult=1 / 16, freeze_blocks=5))
    conv5, fc = model.backbone.extra[0][:-1], model.backbone.extra[0][-1]
    assert not any(_trainable(model.backbone.features)) and not any(_trainable(conv5))
    assert all(_trainable(fc)) and all(_trainable(model.backbone.extra[1])) and model.head.training
    assert model.backbone.scale_weight.requires_grad  # L2Norm's scale is SSD's, not VGG16's
    with pytest.raises(ValueError, match="freeze_blocks"):
        build_detector(DetectorModelConfig(size=64, width_mult=1 / 16, freeze_blocks=6))


def test_extra_batch_norm_sits_before_each_extra_conv() -> None:
    model = build_detector(DetectorModelConfig(size=64, width_mult=1 / 16, extra_batch_norm=True))
    fc = model.backbone.extra[0][-1]
    assert [type(m).__name__ for m in fc] == ["MaxPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU"]  # fc6, fc7
    assert [type(m).__name__ for m in model.backbone.extra[1]] == ["BatchNorm2d", "Conv2d", "ReLU"] * 2
    # The last extra conv outputs 1x1 maps; its BatchNorm sees the 2x2 input, so a batch of one trains.
    model.train()
    losses = model(
        [torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1])}]
    )
    assert all(torch.isfinite(v) for v in losses.values())
    plain = build_detector(DetectorModelConfig(size=64, width_mult=1 / 16, extra_batch_norm=False))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_batch_norm_trunk() -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    model = build_detector(DetectorModelConfig(size=96, width_mult=1 / 16, trunk_batch_norm=True, freeze_blocks=1))
    assert model.backbone.feature_sizes == [12, 6, 3, 1]  # the BN layout keeps the strides
    kinds = [type(m) for m in model.backbone.features]
    assert kinds[:7] == [nn.Conv2d, FrozenBatchNorm2d, nn.ReLU, nn.Conv2d, FrozenBatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert kinds[8] is nn.BatchNorm2d  # block 2 trains, with live BatchNorm
    assert not model.backbone.features[0].weight.requires_grad and model.backbone.features[7].weight.requires_grad


@pytest.mark.parametrize("batch_norm", [False, True])
def test_trunk_state_dict_is_torchvisions_vgg16_layout(batch_norm: bool) -> None:
    # The file the classifier reads: torchvision's vgg16().features (vgg16_bn().features) keys and shapes up
    # to conv5_3, loading strictly into our trunk and computing the detector's own conv4_3 / conv5_3 maps.
    from torchvision.models import vgg16, vgg16_bn

    from imagesearch.backbones import build_vgg16_features, load_vgg16_state_dict

    torch.manual_seed(0)
    model = build_detector(DetectorModelConfig(size=64, width_mult=1.0, trunk_batch_norm=batch_norm)).eval()
    state = model.backbone.trunk_state_dict()
    reference = (vgg16_bn if batch_norm else vgg16)(weights=None).features.state_dict()
    def shapes(sd: dict) -> dict:  # a frozen BatchNorm has no batch counter: compare without it
        return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}

    assert shapes(state) == shapes(reference)
    trunk = build_vgg16_features(None, batch_norm=batch_norm)
    load_vgg16_state_dict(trunk, state, "trunk.pth")
    trunk.eval()
    x = torch.randn(1, 3, 64, 64)
    cut = len(model.backbone.features)
    with torch.no_grad():
        conv4, conv5 = model.backbone.trunk(x)
        torch.testing.assert_close(trunk[:cut](x), conv4)
        torch.testing.assert_close(trunk[: cut + model.backbone.n_conv5](x), conv5)
