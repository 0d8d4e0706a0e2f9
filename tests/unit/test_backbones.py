"""The shared VGG16 trunk: layout vs torchvision, cut points, freezing, weight loading and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16, vgg16_bn
from torchvision.ops.misc import FrozenBatchNorm2d

from imagesearch import backbones
from imagesearch.backbones import (
    VGG16_MEAN,
    VGG16_STD,
    WeightsError,
    build_vgg16_features,
    conv_indices,
    fold_input_normalization,
    freeze_module,
    load_vgg16_weights,
    normalize,
    split_vgg16_features,
    trunk_to_conv5_3,
    vgg16_conv_names,
)

TINY = 1 / 16  # widths 4, 8, 16, 32, 32


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("batch_norm, reference", [(False, vgg16), (True, vgg16_bn)])
def test_layout_matches_torchvision(batch_norm, reference):
    ours = build_vgg16_features(batch_norm=batch_norm)
    with torch.device("meta"):  # torchvision's full model, without allocating its classifier
        theirs = reference(weights=None).features
    assert _shapes(ours) == _shapes(theirs)
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert len(ours) == (44 if batch_norm else 31)


def test_random_init_like_torchvision():
    f = build_vgg16_features(weights="none", width_mult=1 / 4)
    convs = [f[i] for i in conv_indices(f)]
    assert len(convs) == 13
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    # kaiming normal, fan_out, relu: std = sqrt(2 / (out_channels * 9)); conv5_3 has 128*128*9 samples.
    assert convs[-1].weight.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.03)


def test_width_mult_tiny_forward_and_rejects_weights():
    f = build_vgg16_features(width_mult=TINY)
    assert [f[i].out_channels for i in conv_indices(f)] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert f(torch.rand(2, 3, 64, 64)).shape == (2, 32, 2, 2)
    with pytest.raises(ValueError, match="width_mult"):
        build_vgg16_features(weights="VGG16_Weights.IMAGENET1K_V1", width_mult=0.5)


def test_conv_names_and_cut_points():
    plain, bn = build_vgg16_features(width_mult=TINY), build_vgg16_features(batch_norm=True, width_mult=TINY)
    assert vgg16_conv_names(plain)["conv4_3"] == 21 and vgg16_conv_names(plain)["conv5_3"] == 28
    assert vgg16_conv_names(bn)["conv4_3"] == 30 and vgg16_conv_names(bn)["conv5_3"] == 40
    for f, n_upto, n_rest in ((plain, 23, 7), (bn, 33, 10)):
        upto, rest = split_vgg16_features(f)
        assert (len(upto), len(rest)) == (n_upto, n_rest)
        assert isinstance(upto[-1], nn.ReLU) and isinstance(rest[0], nn.MaxPool2d) and isinstance(rest[-1], nn.ReLU)
        assert upto[0] is f[0]  # views share modules: freezing or loading the trunk reaches them
        f.eval()
        x = torch.rand(1, 3, 64, 64)
        mid = upto(x)
        assert mid.shape == (1, 32, 8, 8)
        torch.testing.assert_close(rest(mid), f[:-1](x))  # everything but pool5
        assert trunk_to_conv5_3(f)(x).shape == (1, 32, 4, 4)


def test_normalize_hand_values():
    img = torch.tensor([VGG16_MEAN[0] + VGG16_STD[0], VGG16_MEAN[1], VGG16_MEAN[2] - VGG16_STD[2]]).view(3, 1, 1)
    torch.testing.assert_close(normalize(img).flatten(), torch.tensor([1.0, 0.0, -1.0]))
    u8 = torch.tensor([255, 0, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    expect = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    torch.testing.assert_close(normalize(u8).flatten(), torch.tensor(expect))


def test_fold_input_normalization_hand_values():
    # One output channel, 1x1 kernel W = (2, 3, 4), b = 1; src mean 0.5 std 0.25, dst mean 0 std 1:
    # W' = W * 1 / 0.25 = (8, 12, 16); b' = 1 + sum W * (0 - 0.5) / 0.25 = 1 - 2 * 9 = -17.
    w, b = torch.tensor([2.0, 3.0, 4.0]).view(1, 3, 1, 1), torch.tensor([1.0])
    w2, b2 = fold_input_normalization(w, b, (0.5,) * 3, (0.25,) * 3, (0.0,) * 3, (1.0,) * 3)
    torch.testing.assert_close(w2.flatten(), torch.tensor([8.0, 12.0, 16.0]))
    torch.testing.assert_close(b2, torch.tensor([-17.0]))


def test_fold_input_normalization_same_conv_output_inside():
    g = torch.Generator().manual_seed(0)
    w, b, r = torch.randn(5, 3, 3, 3, generator=g), torch.randn(5, generator=g), torch.rand(1, 3, 9, 9, generator=g)
    src_mean, src_std = (0.48235, 0.45882, 0.40784), (1 / 255,) * 3
    w2, b2 = fold_input_normalization(w, b, src_mean, src_std)
    u = (r - torch.tensor(src_mean).view(3, 1, 1)) / torch.tensor(src_std).view(3, 1, 1)
    want, got = F.conv2d(u, w, b, padding=1), F.conv2d(normalize(r), w2, b2, padding=1)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-3)


def test_freeze_whole_bn_trunk_stays_frozen_in_train_mode():
    f = build_vgg16_features(batch_norm=True, width_mult=TINY)
    with torch.no_grad():
        f[1].running_mean.fill_(0.3)
    freeze_module(f)
    assert not any(p.requires_grad for p in f.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f) and isinstance(f[1], FrozenBatchNorm2d)
    assert torch.all(f[1].running_mean == 0.3)
    f.train()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(f(x), f(x))  # batch statistics would differ from running stats
    fresh = build_vgg16_features(batch_norm=True, width_mult=TINY)
    fresh.load_state_dict(f.state_dict())  # the frozen state dict still loads into a plain BN trunk
    assert torch.all(fresh[1].running_mean == 0.3)


def test_freeze_first_blocks_only():
    f = build_vgg16_features(batch_norm=True, width_mult=TINY)
    freeze_module(f, n_blocks=2)  # blocks 1-2 are layers 0..13 (pool2 at 13)
    assert [not f[i].weight.requires_grad for i in conv_indices(f)] == [True] * 4 + [False] * 9
    assert isinstance(f[11], FrozenBatchNorm2d) and type(f[15]) is nn.BatchNorm2d
    with pytest.raises(ValueError, match="0..5"):
        freeze_module(f, n_blocks=6)


def _tiny_state(batch_norm: bool = False, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_vgg16_features(batch_norm=batch_norm, width_mult=TINY).state_dict()


@pytest.mark.parametrize("form", ["features", "full_model", "checkpoint"])
def test_load_accepted_file_forms(tmp_path, form):
    state = _tiny_state()
    obj = {
        "features": state,
        "full_model": {**{f"features.{k}": v for k, v in state.items()}, "classifier.0.weight": torch.zeros(4, 8)},
        "checkpoint": {"model": {f"trunk.{k}": v for k, v in state.items()}, "epoch": 3},
    }[form]
    torch.save(obj, tmp_path / "w.pth")
    f = build_vgg16_features(width_mult=TINY)
    load_vgg16_weights(f, str(tmp_path / "w.pth"))
    for k, v in f.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_load_plain_file_into_bn_trunk_maps_convs(tmp_path):
    state = _tiny_state()
    torch.save(state, tmp_path / "plain.pth")
    bn = build_vgg16_features(batch_norm=True, width_mult=TINY)
    load_vgg16_weights(bn, str(tmp_path / "plain.pth"))
    plain_convs, bn_convs = conv_indices(build_vgg16_features(width_mult=TINY)), conv_indices(bn)
    assert bn_convs[:3] == [0, 3, 7] and plain_convs[:3] == [0, 2, 5]
    for p, q in zip(plain_convs, bn_convs, strict=True):
        assert torch.equal(bn[q].weight, state[f"{p}.weight"]) and torch.equal(bn[q].bias, state[f"{p}.bias"])
    assert torch.all(bn[1].weight == 1) and torch.all(bn[1].running_var == 1)  # BN stays new


def test_load_bn_file_into_bn_trunk_and_not_into_plain(tmp_path):
    state = _tiny_state(batch_norm=True)
    state["1.running_mean"] = torch.full_like(state["1.running_mean"], 0.7)
    torch.save(state, tmp_path / "bn.pth")
    bn = build_vgg16_features(batch_norm=True, width_mult=TINY)
    load_vgg16_weights(bn, str(tmp_path / "bn.pth"))
    assert torch.all(bn[1].running_mean == 0.7)
    with pytest.raises(WeightsError, match=r"unexpected keys.*1\.running_mean.*batch_norm=True"):
        load_vgg16_weights(build_vgg16_features(width_mult=TINY), str(tmp_path / "bn.pth"))


def test_mismatched_file_lists_keys_and_shapes(tmp_path):
    state = _tiny_state()
    del state["28.bias"]
    state["2.weight"] = torch.zeros(5, 4, 3, 3)
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        load_vgg16_weights(build_vgg16_features(width_mult=TINY), str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys (1): 28.bias" in msg
    assert "unexpected keys (1): head.weight" in msg
    assert "2.weight: file (5, 4, 3, 3) vs trunk (4, 4, 3, 3)" in msg


def test_full_size_file_loads_through_build(tmp_path):
    torch.manual_seed(2)
    state = build_vgg16_features().state_dict()
    torch.save(state, tmp_path / "vgg16_features.pth")
    f = build_vgg16_features(weights=str(tmp_path / "vgg16_features.pth"))
    assert all(torch.equal(v, state[k]) for k, v in f.state_dict().items())
    with pytest.raises(WeightsError, match="does not fit"):  # a full-size file cannot fill a tiny trunk
        load_vgg16_weights(build_vgg16_features(width_mult=TINY), str(tmp_path / "vgg16_features.pth"))


def test_unreadable_sources(tmp_path):
    f = build_vgg16_features(width_mult=TINY)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_vgg16_weights(f, str(tmp_path / "nope.pth"))
    torch.save({"0.weight": torch.zeros(4, 1, 3, 3)}, tmp_path / "gray.pth")
    with pytest.raises(WeightsError, match="gray.pth.*first conv"):
        load_vgg16_weights(f, str(tmp_path / "gray.pth"))


def test_torchvision_enum_caffe_features_are_folded(monkeypatch):
    """IMAGENET1K_FEATURES expect caffe-style input; loading folds it so `normalize` input gives the same conv1_1."""
    torch.manual_seed(3)
    src = {f"features.{k}": v for k, v in build_vgg16_features().state_dict().items()}
    asked = []
    monkeypatch.setattr(backbones, "_fetch_torchvision_state_dict", lambda name: asked.append(name) or src)
    f = build_vgg16_features(weights="VGG16_Weights.IMAGENET1K_FEATURES")
    assert asked == ["VGG16_Weights.IMAGENET1K_FEATURES"]
    assert torch.equal(f[2].weight, src["features.2.weight"])
    r = torch.rand(1, 3, 8, 8)
    caffe = (r - torch.tensor([0.48235, 0.45882, 0.40784]).view(3, 1, 1)) * 255  # torchvision's transforms
    want = F.conv2d(caffe, src["features.0.weight"], src["features.0.bias"], padding=1)
    torch.testing.assert_close(f[0](normalize(r))[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-3)
    # IMAGENET1K_V1 already expects VGG16_MEAN / VGG16_STD: loaded unchanged, and conv-mapped into BN.
    g = build_vgg16_features(weights="VGG16_Weights.IMAGENET1K_V1", batch_norm=True)
    assert torch.equal(g[0].weight, src["features.0.weight"]) and torch.equal(g[3].weight, src["features.2.weight"])
