"""Classifier model: Inception-C shapes and parameter count, frozen trunk, trunk init from a detector."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops.misc import FrozenBatchNorm2d

from imagesearch.backbones import WeightsError, build_vgg16_features, load_vgg16_state_dict
from imagesearch.checkpoint import save_checkpoint
from imagesearch.classifier.model import (
    ClassifierModelConfig,
    InceptionC,
    build_classifier,
    classification_loss,
    detector_trunk_state,
)
from imagesearch.detector.model import DetectorModelConfig, build_detector

SMOKE = ClassifierModelConfig(width_mult=0.125, inception_width_mult=0.0625, image_size=32)


def inception_c_params(c_in: int, c256: int, c384: int, c448: int, c512: int) -> int:
    """Parameters of one Inception-C block, written out from the branch list.

    Each conv has no bias and is followed by a BatchNorm with a weight and a bias per channel:
    conv(cin, cout, k) = cin * cout * k + 2 * cout, k = kernel area (1 for 1x1, 3 for 1x3 / 3x1).
    """

    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k + 2 * cout

    branch0 = conv(c_in, c256, 1)
    branch1 = conv(c_in, c384, 1) + conv(c384, c256, 3) + conv(c384, c256, 3)
    branch2 = conv(c_in, c384, 1) + conv(c384, c448, 3) + conv(c448, c512, 3) + conv(c512, c256, 3) * 2
    branch3 = conv(c_in, c256, 1)  # after a parameter-free 3x3 average pool
    return branch0 + branch1 + branch2 + branch3


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_inception_c_full_width_shape_and_count() -> None:
    block = InceptionC(1536)
    # By hand: b0 393,728; b1 589,824+768 + 2*(294,912+512) = 1,181,440;
    # b2 590,592 + 516,992 + 689,152 + 2*393,728 = 2,584,192; b3 393,728. Total 4,553,088.
    assert n_params(block) == inception_c_params(1536, 256, 384, 448, 512) == 4_553_088
    y = block(torch.randn(2, 1536, 8, 8))
    assert y.shape == (2, 1536, 8, 8)


def test_inception_c_scaled_width() -> None:
    block = InceptionC(96, width_mult=1 / 16)  # widths 16, 24, 28, 32; out 6 * 16 = 96
    assert block.out_channels == 96
    assert n_params(block) == inception_c_params(96, 16, 24, 28, 32)
    assert block(torch.randn(3, 96, 5, 7)).shape == (3, 96, 5, 7)  # odd, non-square map keeps its size


@pytest.mark.parametrize(("neck_pool", "side"), [(True, 1), (False, 2)])
def test_classifier_shapes(neck_pool: bool, side: int) -> None:
    cfg = dataclasses.replace(SMOKE, neck_pool=neck_pool)
    model = build_classifier(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 96, side, side) and model.embed_dim == 96
    assert model(x).shape == (2, 23)
    # The head after the trunk: 1x1 conv + BN to 96, 3 blocks, FC 96 -> 23.
    head = n_params(model) - n_params(model.trunk)
    assert head == (64 * 96 + 2 * 96) + 3 * inception_c_params(96, 16, 24, 28, 32) + (96 * 23 + 23)


def _train_step(model: nn.Module) -> None:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = classification_loss(model, torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))["cls"]
    loss.backward()
    opt.step()


def test_frozen_trunk_stays_frozen() -> None:
    torch.manual_seed(0)
    model = build_classifier(SMOKE)
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    neck_bn_before = model.neck[1].running_mean.clone()
    _train_step(model)
    assert all(not p.requires_grad and p.grad is None for p in model.trunk.parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.trunk)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.trunk)
    after = model.trunk.state_dict()
    assert before.keys() == after.keys() and any("running_mean" in k for k in before)
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    # The same step does move the unfrozen parts (so the check above can fail).
    assert not torch.equal(model.neck[1].running_mean, neck_bn_before)


def test_unfrozen_trunk_trains() -> None:
    torch.manual_seed(0)
    model = build_classifier(dataclasses.replace(SMOKE, freeze_trunk=False))
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    _train_step(model)
    after = model.trunk.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    assert not torch.equal(after["1.running_mean"], before["1.running_mean"])


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_trunk_state_from_torchvision_ssd() -> None:
    # torchvision's SSD300-VGG16 is the layout oracle: conv1_1..conv4_3 in backbone.features,
    # conv5_x in backbone.extra.0, then conv6/conv7, extras and heads, which must not be taken.
    # (The feature extractor alone: ssd300_vgg16() would also build VGG16's 120M-parameter classifier.)
    torch.manual_seed(0)
    extractor = SSDFeatureExtractorVGG(make_layers(cfgs["D"]), highres=False)
    ssd_state = {f"backbone.{k}": v for k, v in extractor.state_dict().items()}
    assert "backbone.extra.0.1.weight" in ssd_state  # conv5_1 sits in the first extra block
    features = build_vgg16_features(None, batch_norm=True)
    load_vgg16_state_dict(features, detector_trunk_state(ssd_state, features, "ssd"), "ssd")
    ours, theirs = _convs(features), _convs(extractor)[:13]
    assert len(ours) == 13 and theirs[-1].in_channels == 512 and theirs[-1].out_channels == 512
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
        torch.testing.assert_close(a.bias, b.bias, rtol=0, atol=0)


def _save_detector(path: Path, width_mult: float) -> list[nn.Conv2d]:
    # Our detector (stage 3) as the producer of `trunk_checkpoint`; its first 13 convs are VGG16's.
    detector = build_detector(DetectorModelConfig(size=64, width_mult=width_mult))
    save_checkpoint(path, {"model": detector.state_dict(), "epoch": 3, "config": {}})
    return _convs(detector.backbone)[:13]


def test_trunk_from_detector_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    det_convs = _save_detector(tmp_path / "detector.pt", SMOKE.width_mult)
    model = build_classifier(dataclasses.replace(SMOKE, trunk_checkpoint=str(tmp_path / "detector.pt")))
    for ours, theirs in zip(_convs(model.trunk), det_convs, strict=True):
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=0, atol=0)
        torch.testing.assert_close(ours.bias, theirs.bias, rtol=0, atol=0)
    # The trunk's BatchNorm layers are new: identity affine, zero mean, unit variance.
    bns = [m for m in model.trunk if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 13
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) for b in bns)
    assert all(torch.equal(b.running_mean, torch.zeros_like(b.running_mean)) for b in bns)
    assert all(torch.equal(b.running_var, torch.ones_like(b.running_var)) for b in bns)


def test_trunk_from_batch_norm_detector_keeps_its_statistics(tmp_path: Path) -> None:
    # A detector with a VGG16-BN trunk (`trunk_batch_norm`, the smoke config): its BatchNorms' weights
    # and running statistics must come with its convs. Made non-trivial first (as training leaves them),
    # then the classifier's frozen trunk must compute what the detector's own VGG16-BN layers compute.
    torch.manual_seed(0)
    detector = build_detector(DetectorModelConfig(size=64, width_mult=SMOKE.width_mult, trunk_batch_norm=True))
    det_bns = [m for m in detector.backbone.modules() if isinstance(m, nn.BatchNorm2d)][:13]
    for bn in det_bns:
        for name in ("weight", "bias", "running_mean"):
            getattr(bn, name).data.normal_(0.0 if name != "weight" else 1.0, 0.3)
        bn.running_var.data.uniform_(0.5, 2.0)
    save_checkpoint(tmp_path / "detector.pt", {"model": detector.state_dict(), "epoch": 3, "config": {}})
    model = build_classifier(dataclasses.replace(SMOKE, trunk_checkpoint=str(tmp_path / "detector.pt")))
    bns = [m for m in model.trunk if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 13
    for ours, theirs in zip(bns, det_bns, strict=True):
        for name in ("weight", "bias", "running_mean", "running_var"):
            torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=0, atol=0)
    # Same function: the detector's conv/BN/ReLU/pool layers up to conv5_3's ReLU, in eval mode.
    layers = [
        m for m in detector.backbone.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d))
    ]
    reference = nn.Sequential(*layers[: len(model.trunk)]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.trunk.eval()(x), reference(x))


def test_trunk_from_detector_of_wrong_width(tmp_path: Path) -> None:
    _save_detector(tmp_path / "detector.pt", 0.25)
    cfg = dataclasses.replace(SMOKE, trunk_checkpoint=str(tmp_path / "detector.pt"))
    with pytest.raises(WeightsError, match=r"detector.pt: found only 0 of the 13 .* \(8, 3, 3, 3\)"):
        build_classifier(cfg)
