"""The VGG16 trunk shared by the detector, the classifier and the embedder, with its weight loading.

Every stage builds its trunk with `build_vgg16_features` (STYLE §1) and cuts it with the helpers
here, so "which VGG16, which weights, which input normalisation" has one answer.

Input convention: every trunk built here takes RGB images in 0-1 normalised by `VGG16_MEAN` /
`VGG16_STD` (see `normalize`), whatever its weights. torchvision's `VGG16_Weights.IMAGENET1K_FEATURES`
were trained on caffe-style input (RGB 0-255 minus the mean, no std division); on load, that
difference is folded into conv1_1 (`fold_input_normalization`), so callers never need to know which
weights a trunk holds.

`weights` accepts exactly:
  * None or "none": random init, as torchvision's VGG does it.
  * a torchvision enum name matching `VGG16_Weights.*` or `VGG16_BN_Weights.*` (e.g.
    "VGG16_Weights.IMAGENET1K_FEATURES"): torchvision's weights. This DOWNLOADS them (or reads
    torchvision's cache); only pass it when the user asks for it. Tests never do.
  * any other string: a local file read by `torch.load(weights_only=True)` holding one of
      1. a `vgg16().features` state dict: keys "0.weight", "0.bias", "2.weight", ..., "28.bias"
         (what scripts/convert_vgg16_weights.py writes), or a `vgg16_bn().features` one;
      2. the same keys under one common prefix ending in ".", e.g. a full `vgg16().state_dict()`
         ("features.0.weight", ...) or a stage checkpoint ("trunk.0.weight", ...). The prefix is the
         one P for which P + "0.weight" is a conv kernel with 3 input channels; keys outside P are ignored;
      3. a checkpoint dict holding (1) or (2) under its "model" (or "state_dict") key.
    A local file must expect the input convention above (as torchvision's IMAGENET1K_V1 and our
    converter's output do). Plain VGG16 conv weights (from a file or an enum) load into a
    batch-norm trunk conv by conv; its BatchNorm layers keep their fresh init.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops.misc import FrozenBatchNorm2d

# The file a trained detector writes beside best.pt: its VGG16 trunk in `vgg16().features` layout, which the
# stages that start from the detector's trunk read as `weights` (weights pass between stages as files).
TRUNK_FILE = "trunk.pth"
VGG16_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
VGG16_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_ENUM_RE = re.compile(r"^VGG16(_BN)?_Weights\.[A-Za-z0-9_]+$")
_FIRST_CONV_RE = re.compile(r"^(|.*\.)0\.weight$")


class WeightsError(ValueError):
    """A weights file or dict that does not fit the trunk; the message names the file and the keys."""


def build_vgg16_features(
    weights: str | None = None, batch_norm: bool = False, width_mult: float = 1.0
) -> nn.Sequential:
    """Build the VGG16 convolutional trunk in torchvision's `vgg16().features` layout.

    Args:
        weights: None/"none", a torchvision enum name, or a local file (see the module docstring).
        batch_norm: use the `vgg16_bn().features` layout (conv, BN, ReLU per layer).
        width_mult: scales every channel width (min 1) for tiny CPU smoke models; with weights None or a
            local file of the reduced shapes.

    Returns:
        nn.Sequential mapping (N, 3, H, W) normalised RGB to (N, 512*width_mult, H/32, W/32); 31 layers
        (44 with batch_norm), the last a MaxPool2d.
    """
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    has_weights = weights is not None and str(weights).lower() != "none"
    if has_weights and width_mult != 1.0 and _ENUM_RE.match(str(weights)):
        # A local file of the reduced trunk's shapes loads (the strict shape check below guards it).
        raise ValueError(f"width_mult={width_mult} builds a reduced trunk; torchvision's {weights!r} does not fit it")
    cfg = [v if v == "M" else max(1, round(int(v) * width_mult)) for v in cfgs["D"]]
    features = make_layers(cfg, batch_norm=batch_norm)
    _init_like_torchvision(features)
    if has_weights:
        load_vgg16_weights(features, str(weights))
    return features


def _init_like_torchvision(module: nn.Module) -> None:
    # The same init as torchvision's VGG.__init__; calling vgg16() instead would also build and
    # initialise its 120M-parameter classifier only to throw it away.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def normalize(images: Tensor) -> Tensor:
    """Apply the trunk's input normalisation.

    Args:
        images: (N, 3, H, W) or (3, H, W) RGB, float in 0-1 or uint8 in 0-255.

    Returns:
        Float tensor of the same shape, (x - VGG16_MEAN) / VGG16_STD per channel.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(VGG16_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(VGG16_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def fold_input_normalization(
    weight: Tensor,
    bias: Tensor,
    src_mean: Sequence[float],
    src_std: Sequence[float],
    dst_mean: Sequence[float] = VGG16_MEAN,
    dst_std: Sequence[float] = VGG16_STD,
) -> tuple[Tensor, Tensor]:
    """Rewrite a first conv trained on u = (r - src_mean) / src_std to take t = (r - dst_mean) / dst_std.

    r is the RGB image in 0-1. Since r = dst_std * t + dst_mean,
        u_c = (dst_std_c / src_std_c) * t_c + (dst_mean_c - src_mean_c) / src_std_c, hence
        W'[o, c, h, w] = W[o, c, h, w] * dst_std_c / src_std_c
        b'[o]          = b[o] + sum_{c,h,w} W[o, c, h, w] * (dst_mean_c - src_mean_c) / src_std_c
    and conv(t; W', b') == conv(u; W, b) wherever the kernel window lies inside the image. On the
    one-pixel zero-padded border the padding stands for r = dst_mean instead of r = src_mean.

    Args:
        weight: (O, 3, kH, kW) kernel, input channels in the order of the means.
        bias: (O,) bias.
        src_mean, src_std: the normalisation the conv was trained with, 3 values each, 0-1 scale.
        dst_mean, dst_std: the normalisation it shall take.

    Returns:
        (weight', bias') with the input dtypes and shapes.
    """
    w64 = weight.detach().double()
    sm, ss, dm, ds = (
        torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in (src_mean, src_std, dst_mean, dst_std)
    )
    new_w = w64 * ds / ss
    new_b = bias.detach().double() + (w64 * (dm - sm) / ss).sum(dim=(1, 2, 3))
    return new_w.to(weight.dtype), new_b.to(bias.dtype)


# ---------------------------------------------------------------------------------------------
# Layer-list helpers: positions are always computed from the module, never hard-coded.


def conv_indices(features: nn.Sequential) -> list[int]:
    """Positions of the Conv2d layers in a VGG trunk, in order (13 for VGG16)."""
    return [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]


def vgg16_conv_names(features: nn.Sequential) -> dict[str, int]:
    """Map "conv{block}_{k}" (paper / Keras numbering, blocks split by MaxPool2d) to a layer position.

    For `vgg16().features`: {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, ..., "conv5_3": 28}.
    """
    names: dict[str, int] = {}
    block, k = 1, 0
    for i, m in enumerate(features):
        if isinstance(m, nn.MaxPool2d):
            block, k = block + 1, 0
        elif isinstance(m, nn.Conv2d):
            k += 1
            names[f"conv{block}_{k}"] = i
    return names


def layer_end(features: nn.Sequential, conv_name: str) -> int:
    """Position just past the ReLU that follows `conv_name` (after its BatchNorm, if any)."""
    names = vgg16_conv_names(features)
    if conv_name not in names:
        raise KeyError(f"{conv_name!r} is not a conv of this trunk; it has {list(names)}")
    for i in range(names[conv_name] + 1, len(features)):
        if isinstance(features[i], nn.ReLU):
            return i + 1
    raise ValueError(f"no ReLU follows {conv_name} in the trunk")


def trunk_to_conv5_3(features: nn.Sequential) -> nn.Sequential:
    """The trunk up to the ReLU after conv5_3, without pool5 (classifier / embedder input).

    Shares its modules with `features`. Output (N, 512, H/16, W/16).
    """
    return features[: layer_end(features, "conv5_3")]


def split_vgg16_features(features: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut the trunk at conv4_3 (after its ReLU), as SSD300 does.

    Returns:
        (upto_conv4_3, rest): upto_conv4_3 maps (N, 3, H, W) to conv4_3 maps (N, 512, H/8, W/8); rest
        runs pool4 through the ReLU after conv5_3, giving (N, 512, H/16, W/16); pool5 is dropped (SSD
        replaces it, the classifier does not use it). Both share their modules with `features`.
    """
    cut = layer_end(features, "conv4_3")
    return features[:cut], features[cut : layer_end(features, "conv5_3")]


def freeze_module(module: nn.Module, n_blocks: int | None = None) -> nn.Module:
    """Freeze the whole module, or only the first `n_blocks` conv blocks of a VGG trunk, in place.

    Frozen parameters get requires_grad False, and every nn.BatchNorm2d in the frozen part is
    replaced by torchvision's FrozenBatchNorm2d (same statistics, no parameters, always normalises
    with the running stats). That swap is how BN stays frozen when callers put the model in train
    mode: `model.train()` would switch a plain BatchNorm2d back to batch statistics and update its
    running stats. The state dict keeps its keys (less `num_batches_tracked`) and loads both ways.
    Freeze before taking `split_vgg16_features` views, or freeze the views themselves: a view made
    earlier keeps the old BatchNorm2d objects.

    Args:
        module: any module (n_blocks None), or a flat VGG nn.Sequential.
        n_blocks: None for all; else 0..5, a block being the layers up to and including a MaxPool2d
            (the last block may lack its pool).

    Returns:
        The same module.
    """
    if isinstance(module, nn.BatchNorm2d):
        raise TypeError("freeze a BatchNorm2d through its parent module, which can hold the replacement")
    if n_blocks is None:
        part: nn.Module = module
    else:
        if not isinstance(module, nn.Sequential):
            raise TypeError(f"n_blocks needs a flat VGG nn.Sequential, got {type(module).__name__}")
        pools = [i for i, m in enumerate(module) if isinstance(m, nn.MaxPool2d)]
        tail_has_conv = any(isinstance(m, nn.Conv2d) for m in list(module)[(pools[-1] + 1 if pools else 0) :])
        n_total = len(pools) + int(tail_has_conv)
        if not 0 <= n_blocks <= n_total:
            raise ValueError(f"n_blocks must be in 0..{n_total} for this trunk, got {n_blocks}")
        end = pools[n_blocks - 1] + 1 if 0 < n_blocks <= len(pools) else (len(module) if n_blocks else 0)
        part = module[:end]
    for p in part.parameters():
        p.requires_grad_(False)
    targets = {id(m) for m in part.modules() if isinstance(m, nn.BatchNorm2d)}
    _swap_batchnorm(module, targets)
    return module


def _swap_batchnorm(parent: nn.Module, targets: set[int]) -> None:
    for name, child in parent.named_children():
        if isinstance(child, nn.BatchNorm2d) and id(child) in targets:
            if child.running_mean is None or child.running_var is None:
                raise ValueError(f"BatchNorm2d {name!r} tracks no running stats, so it cannot be frozen")
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps).to(child.running_mean.device)
            ones, zeros = torch.ones_like(child.running_mean), torch.zeros_like(child.running_mean)
            frozen.weight.copy_(child.weight.detach() if child.weight is not None else ones)
            frozen.bias.copy_(child.bias.detach() if child.bias is not None else zeros)
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(parent, name, frozen)
        else:
            _swap_batchnorm(child, targets)


# ---------------------------------------------------------------------------------------------
# Weight loading.


def load_vgg16_weights(features: nn.Sequential, weights: str) -> None:
    """Load a torchvision enum or a local file (forms in the module docstring) into `features`, in place.

    Raises:
        FileNotFoundError: a path that is not a file.
        WeightsError: keys or shapes that do not fit, naming the source, the missing and unexpected
            keys and the shape mismatches.
    """
    if _ENUM_RE.match(weights):
        state, where = _torchvision_state_dict(weights), f"torchvision {weights}"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG16 weights file not found: {path}. The ImageNet VGG16 file is made offline by "
                f"`python scripts/convert_vgg16_weights.py --out {path}` (scripts/run_pipeline.py runs it when "
                "missing); weights may also be 'none' or a torchvision name such as 'VGG16_Weights.IMAGENET1K_FEATURES'"
            )
        state, where = read_vgg16_state_dict(path), str(path)
    load_vgg16_state_dict(features, state, where)


def _fetch_torchvision_state_dict(name: str) -> Mapping[str, Tensor]:
    """torchvision's full-model state dict for an enum name; downloads on first use (tests replace this)."""
    return torchvision.models.get_weight(name).get_state_dict(progress=True)


def _torchvision_state_dict(name: str) -> dict[str, Tensor]:
    transforms = torchvision.models.get_weight(name).transforms()
    state = {k.removeprefix("features."): v for k, v in _fetch_torchvision_state_dict(name).items()}
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    src_mean, src_std = tuple(transforms.mean), tuple(transforms.std)
    if any(abs(a - b) > 1e-6 for a, b in zip(src_mean + src_std, VGG16_MEAN + VGG16_STD, strict=True)):
        # e.g. IMAGENET1K_FEATURES: mean (0.48235, 0.45882, 0.40784), std 1/255 (caffe style).
        state["0.weight"], state["0.bias"] = fold_input_normalization(
            state["0.weight"], state["0.bias"], src_mean, src_std
        )
    return state


def read_vgg16_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a local weights file and return the trunk's keys with any prefix removed ("0.weight", ...).

    Raises:
        WeightsError: not a dict of tensors, or no / several candidate prefixes.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state dict (or a checkpoint with a 'model' key), got {type(obj).__name__}"
        )
    prefixes = sorted(
        m.group(1)
        for k, v in obj.items()
        if isinstance(k, str) and (m := _FIRST_CONV_RE.match(k)) and isinstance(v, Tensor)
        if v.dim() == 4 and v.shape[1] == 3
    )
    if len(prefixes) != 1:
        raise WeightsError(
            f"{path}: cannot find the trunk's first conv: {len(prefixes)} keys '<prefix>0.weight' with 3 input "
            f"channels ({prefixes}); expected exactly one, e.g. '0.weight' or 'features.0.weight'"
        )
    prefix = prefixes[0]
    return {k[len(prefix) :]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}


def load_vgg16_state_dict(features: nn.Sequential, state: Mapping[str, Tensor], where: str = "<state dict>") -> None:
    """Load a prefix-free trunk state dict into `features`, strictly; plain conv weights map into a BN trunk.

    Raises:
        WeightsError: missing or unexpected keys, or shape mismatches, all listed with `where`.
    """
    target_bn = any(isinstance(m, nn.BatchNorm2d) for m in features)
    source_bn = any(k.endswith("running_mean") for k in state)
    if target_bn and not source_bn:
        # Plain VGG16 -> VGG16-BN: conv i of the plain layout is conv i of the BN layout.
        with torch.device("meta"):  # shapes and positions only: nothing is allocated
            plain = make_layers(_vgg_cfg(features), batch_norm=False)
        expected = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
        rename = {
            f"{p}.{name}": f"{q}.{name}"
            for p, q in zip(conv_indices(plain), conv_indices(features), strict=True)
            for name in ("weight", "bias")
        }
    else:
        expected = {k: tuple(v.shape) for k, v in features.state_dict().items()}
        rename = {}
    hint = "it holds a batch-norm trunk: build with batch_norm=True" if source_bn and not target_bn else ""
    _check_keys(state, expected, where, target_bn, hint)
    incompatible = features.load_state_dict({rename.get(k, k): v for k, v in state.items()}, strict=not rename)
    assert not incompatible.unexpected_keys, incompatible  # _check_keys has vetted every key


def _vgg_cfg(features: nn.Sequential) -> list[int | str]:
    # torchvision's cfg list (out channels per conv, "M" per pool) read back from a built trunk.
    return [
        m.out_channels if isinstance(m, nn.Conv2d) else "M"
        for m in features
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    ]


def _check_keys(
    state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], where: str, bn: bool, hint: str = ""
) -> None:
    # num_batches_tracked is optional: BatchNorm fills it in when an older state dict lacks it.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs trunk {expected[k]}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    layout = "vgg16_bn().features" if bn else "vgg16().features"
    parts = [f"{where}: does not fit {layout}"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:30]) + (f", ... ({len(items) - 30} more)" if len(items) > 30 else "")
            parts.append(f"{title} ({len(items)}): {shown}")
    if hint:
        parts.append(hint)
    raise WeightsError("; ".join(parts))
