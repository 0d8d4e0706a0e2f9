"""Classifier model: Inception-C shapes and parameter count, frozen trunk, trunk init from a trunk file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from imagesearch.backbones import WeightsError, build_vgg16_features
from imagesearch.classifier.model import (
    ClassifierModelConfig,
    InceptionC,
    build_classifier,
    classification_loss,
)

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


def _trunk_file(path: Path, batch_norm: bool, width_mult: float = SMOKE.width_mult) -> nn.Sequential:
    """A trunk file as a trained detector writes it (`trunk.pth`: torchvision's `vgg16().features` layout, or
    `vgg16_bn()`'s), with trained-looking BatchNorm statistics."""
    torch.manual_seed(0)
    features = build_vgg16_features(None, batch_norm=batch_norm, width_mult=width_mult)
    for bn in (m for m in features if isinstance(m, nn.BatchNorm2d)):
        for name in ("weight", "bias", "running_mean"):
            getattr(bn, name).data.normal_(0.0 if name != "weight" else 1.0, 0.3)
        bn.running_var.data.uniform_(0.5, 2.0)
    torch.save(features.state_dict(), path)
    return features


def test_trunk_from_a_plain_trunk_file(tmp_path: Path) -> None:
    theirs = _convs(_trunk_file(tmp_path / "trunk.pth", batch_norm=False))
    model = build_classifier(dataclasses.replace(SMOKE, weights=str(tmp_path / "trunk.pth")))
    for ours, their in zip(_convs(model.trunk), theirs, strict=True):
        torch.testing.assert_close(ours.weight, their.weight, rtol=0, atol=0)
        torch.testing.assert_close(ours.bias, their.bias, rtol=0, atol=0)
    # The trunk's BatchNorm layers are new: identity affine, zero mean, unit variance.
    bns = [m for m in model.trunk if isinstance(m, FrozenBatchNorm2d)]
    assert len(bns) == 13
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) for b in bns)
    assert all(torch.equal(b.running_mean, torch.zeros_like(b.running_mean)) for b in bns)
    assert all(torch.equal(b.running_var, torch.ones_like(b.running_var)) for b in bns)


def test_batch_norm_trunk_file_keeps_its_statistics(tmp_path: Path) -> None:
    # A VGG16-BN trunk (a detector with `trunk_batch_norm`, the smoke config): the classifier's frozen trunk
    # must compute what those layers compute, statistics included.
    features = _trunk_file(tmp_path / "trunk.pth", batch_norm=True).eval()
    model = build_classifier(dataclasses.replace(SMOKE, weights=str(tmp_path / "trunk.pth")))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.trunk.eval()(x), features[: len(model.trunk)](x))


def test_trunk_file_of_another_width(tmp_path: Path) -> None:
    _trunk_file(tmp_path / "trunk.pth", batch_norm=False, width_mult=0.25)
    with pytest.raises(WeightsError, match=r"trunk.pth.*\(16, 3, 3, 3\)"):
        build_classifier(dataclasses.replace(SMOKE, weights=str(tmp_path / "trunk.pth")))
