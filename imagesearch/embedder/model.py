"""The embedder (SPEC §3 stage 5, §4): a backbone without its classification head, pooled, projected, L2-normalised.

    image (N, 3, S, S)
      -> trunk -> neck -> blocks     feature map (N, C, h, w)   (C = 1536 for the classifier design)
      -> pool (avg | max | GeM)      (N, C)
      -> proj (Linear C -> D, or identity when embed_dim = 0)
      -> L2 normalisation            (N, D), unit norm

Backbones:
  * "vgg16_inception" (default): the classifier (VGG16-BN trunk, 1x1 neck, Inception-C blocks) without
    its FC layer, initialised from a classifier checkpoint (`init_checkpoint`), or built from
    `classifier` (its trunk initialised from `classifier.weights`).
  * "torchvision:<name>", e.g. "torchvision:resnet50": any torchvision classification network whose
    head can be cut (ResNet/ResNeXt/Wide-ResNet/RegNet: everything before `avgpool`; VGG, EfficientNet,
    MobileNet, ConvNeXt, DenseNet: `features`), weights from `weights`. `neck` and `blocks` are then identities.

Which parts train is `train_parts`: names of submodules ("trunk", "neck", "blocks", "pool", "proj", or
deeper ones such as "trunk.layer4"); everything else is frozen (no gradients, and BatchNorm layers
replaced by FrozenBatchNorm2d so their statistics stay fixed in train mode). The classifier config's
own `freeze_trunk` is not used here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from imagesearch.backbones import freeze_module
from imagesearch.checkpoint import load_checkpoint, load_model
from imagesearch.classifier.model import ClassifierModelConfig, build_classifier
from imagesearch.config import config_from_dict
from imagesearch.data.augment import crop_transform
from imagesearch.features.pooling import build_pool

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "vgg16_inception"
TORCHVISION_PREFIX = "torchvision:"


@dataclass
class EmbedderModelConfig:
    """Architecture, initialisation and trainable parts of the embedder.

    Attributes:
        backbone: "vgg16_inception" or "torchvision:<model name>".
        init_checkpoint: a classifier checkpoint (`scripts/train_classifier.py`) to start from; its stored
            architecture replaces `classifier` ("vgg16_inception" only). "" = none.
        classifier: the classifier architecture and trunk init when there is no `init_checkpoint`.
        weights: torchvision backbones: "none", a weights enum name ("ResNet50_Weights.IMAGENET1K_V2",
            downloads) or a local state-dict file of the full torchvision model.
        pool: "avg" | "max" | "gem".
        gem_p: GeM's initial exponent; gem_learnable: train it.
        embed_dim: projection size D; 0 = no projection (D = C).
        train_parts: submodules that train (see the module docstring).
        image_size: crops are resized to image_size x image_size.
    """

    backbone: str = DEFAULT_BACKBONE
    init_checkpoint: str = ""
    classifier: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    weights: str = "none"
    pool: str = "avg"
    gem_p: float = 3.0
    gem_learnable: bool = True
    embed_dim: int = 0
    train_parts: list[str] = field(default_factory=lambda: ["neck", "blocks", "pool", "proj"])
    image_size: int = 224


class Embedder(nn.Module):
    """Backbone feature map -> global pooling -> optional projection -> unit-norm embedding.

    Attributes:
        trunk, neck, blocks: the backbone, in three parts (neck/blocks are identities for torchvision).
        pool: (N, C, h, w) -> (N, C).
        proj: (N, C) -> (N, D), or identity.
        cfg: the resolved model config (what `load_embedder` rebuilds from).
    """

    def __init__(self, trunk: nn.Module, neck: nn.Module, blocks: nn.Module, channels: int, cfg: EmbedderModelConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk, self.neck, self.blocks = trunk, neck, blocks
        pool_args: dict[str, Any] = {"p": cfg.gem_p, "learnable": cfg.gem_learnable} if cfg.pool == "gem" else {}
        self.pool = build_pool(cfg.pool, **pool_args)
        self.proj: nn.Module = nn.Linear(channels, cfg.embed_dim) if cfg.embed_dim > 0 else nn.Identity()
        self._dim = cfg.embed_dim if cfg.embed_dim > 0 else channels

    @property
    def embed_dim(self) -> int:
        """D, the embedding size."""
        return self._dim

    def forward_features(self, x: Tensor) -> Tensor:
        """Normalised RGB (N, 3, H, W) -> backbone feature map (N, C, h, w)."""
        return self.blocks(self.neck(self.trunk(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalised RGB (N, 3, H, W) -> (N, D) L2-normalised embeddings (with gradients)."""
        return F.normalize(self.proj(self.pool(self.forward_features(x))), p=2, dim=1)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Inference embeddings, in eval mode (the previous mode is restored after).

        Args:
            images: (N, 3, H, W) float, normalised as `augment.crop_transform` does.

        Returns:
            (N, D) unit-norm embeddings on the images' device.
        """
        was_training = self.training
        self.eval()
        try:
            return self(images)
        finally:
            self.train(was_training)

    def embed_crops(self, crops: Sequence[np.ndarray], batch_size: int = 64) -> Tensor:
        """Embed RGB crops of any size: resize to `cfg.image_size`, normalise, embed in batches.

        Args:
            crops: RGB uint8 arrays (H, W, 3).
            batch_size: crops per forward pass.

        Returns:
            (len(crops), D) float32 unit-norm embeddings, on the CPU.
        """
        if not crops:
            return torch.zeros(0, self.embed_dim)
        transform = crop_transform(self.cfg.image_size, train=False)
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(crops), batch_size):
            batch = torch.stack([transform(image=c)["image"] for c in crops[start : start + batch_size]])
            out.append(self.embed(batch.to(device)).float().cpu())
        return torch.cat(out)


def _classifier_init(cfg: EmbedderModelConfig) -> tuple[EmbedderModelConfig, dict[str, Tensor] | None]:
    """The config with the architecture made explicit, and the classifier weights to start from (or None).

    With `init_checkpoint`, `classifier` becomes the checkpoint's stored classifier config, with
    `weights: none` since the checkpoint's weights replace that init. What `fit`
    saves is this resolved config, so `load_embedder` needs no other file.
    """
    if not cfg.init_checkpoint:
        return cfg, None
    if cfg.backbone != DEFAULT_BACKBONE:
        raise ValueError(f"model.init_checkpoint needs backbone {DEFAULT_BACKBONE!r}, got {cfg.backbone!r}")
    ckpt = load_checkpoint(cfg.init_checkpoint)
    try:
        stored = config_from_dict(ClassifierModelConfig, ckpt["config"]["model"], where=f"{cfg.init_checkpoint}: config['model']")
        state = ckpt["model"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{cfg.init_checkpoint}: not a classifier checkpoint (config['model'], model)") from exc
    return replace(cfg, classifier=replace(stored, weights="none")), state


def build_embedder(cfg: EmbedderModelConfig) -> Embedder:
    """Build the embedder, load its initial weights and freeze what `train_parts` leaves out.

    The returned model's `cfg` is the resolved config (see `_classifier_init`).

    Raises:
        FileNotFoundError: a missing `init_checkpoint` or weights file.
        ValueError: an unknown backbone, a checkpoint that does not fit, or an unknown train part.
    """
    cfg, init_state = _classifier_init(cfg)
    if cfg.backbone == DEFAULT_BACKBONE:
        classifier = build_classifier(replace(cfg.classifier, freeze_trunk=False))
        if init_state is not None:
            try:
                classifier.load_state_dict(init_state)
            except RuntimeError as exc:
                raise ValueError(f"{cfg.init_checkpoint}: weights do not fit its stored config: {exc}") from exc
            log.info("embedder initialised from classifier %s", cfg.init_checkpoint)
        model = Embedder(classifier.trunk, classifier.neck, classifier.blocks, classifier.embed_dim, cfg)
    elif cfg.backbone.startswith(TORCHVISION_PREFIX):
        trunk, channels = build_torchvision_trunk(cfg.backbone[len(TORCHVISION_PREFIX) :], cfg.weights)
        model = Embedder(trunk, nn.Identity(), nn.Identity(), channels, cfg)
    else:
        raise ValueError(f"model.backbone: {cfg.backbone!r}, expected {DEFAULT_BACKBONE!r} or 'torchvision:<name>'")
    set_train_parts(model, cfg.train_parts)
    return model


def build_torchvision_trunk(name: str, weights: str = "none") -> tuple[nn.Module, int]:
    """A torchvision classification network without its pooling and head.

    Args:
        name: a `torchvision.models.get_model` name, e.g. "resnet50", "efficientnet_b0", "convnext_tiny".
        weights: "none", a weights enum name (downloads), or a local full-model state-dict file.

    Returns:
        (trunk mapping (N, 3, H, W) to a feature map (N, C, h, w), C).
    """
    has_enum = weights not in ("", "none") and "_Weights." in weights and not Path(weights).exists()
    try:
        net = torchvision.models.get_model(name, weights=weights if has_enum else None)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"model.backbone: torchvision has no model {name!r} ({exc})") from exc
    if weights not in ("", "none") and not has_enum:
        try:
            net.load_state_dict(_read_state_dict(Path(weights)))
        except RuntimeError as exc:
            raise ValueError(f"model.weights: {weights} does not fit torchvision {name!r}: {exc}") from exc
    if hasattr(net, "avgpool") and hasattr(net, "fc"):  # ResNet, ResNeXt, Wide-ResNet, RegNet
        children = OrderedDict(net.named_children())
        trunk: nn.Module = nn.Sequential(
            OrderedDict((k, children[k]) for k in list(children)[: list(children).index("avgpool")])
        )
    elif isinstance(getattr(net, "features", None), nn.Module):  # VGG, EfficientNet, MobileNet, ConvNeXt, DenseNet
        trunk = net.features
        if isinstance(net, torchvision.models.DenseNet):  # DenseNet applies its last ReLU in forward()
            trunk = nn.Sequential(OrderedDict([("features", trunk), ("relu", nn.ReLU())]))
    else:
        raise ValueError(f"model.backbone: cannot cut the head off torchvision {name!r}; use a CNN classifier")
    was_training = trunk.training
    with torch.no_grad():  # the channel count, from one small forward pass
        channels = int(trunk.eval()(torch.zeros(1, 3, 64, 64)).shape[1])
    trunk.train(was_training)
    return trunk, channels


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"model.weights: {path} holds {type(obj).__name__}, not a state dict")
    return obj


def set_train_parts(model: nn.Module, parts: Sequence[str]) -> nn.Module:
    """Freeze every submodule of `model` that is not in (or under) one of `parts`, in place.

    Args:
        model: the embedder.
        parts: submodule names as in `model.named_modules()`, e.g. ["blocks", "proj"] or ["trunk.layer4"].

    Raises:
        ValueError: a name that is not a submodule; the message lists the top-level ones.
    """
    names = dict(model.named_modules())
    unknown = [p for p in parts if not p or p not in names]
    if unknown:
        raise ValueError(
            f"model.train_parts: unknown parts {unknown}; top-level parts are {[n for n, _ in model.named_children()]}"
        )
    _freeze_except(model, "", set(parts))
    return model


def _freeze_except(module: nn.Module, prefix: str, parts: set[str]) -> None:
    for p in module.parameters(recurse=False):
        p.requires_grad_(False)
    for name, child in list(module.named_children()):
        path = prefix + name
        if path in parts:
            continue
        if any(p.startswith(path + ".") for p in parts):
            _freeze_except(child, path + ".", parts)
        elif isinstance(child, nn.BatchNorm2d):  # freeze_module swaps a BatchNorm through its parent
            setattr(module, name, freeze_module(nn.Sequential(child))[0])
        else:
            freeze_module(child)


def load_embedder(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> Embedder:
    """A trained embedder from a checkpoint of `scripts/train_embedder.py` (`checkpoint.load_model`), in eval mode.

    The architecture comes from the checkpoint's stored (resolved) `config["model"]`; no other file is
    read (`init_checkpoint` and weights files are ignored: the trained weights replace them). The state
    may be the training wrapper's (keys "embedder.*", plus the loss's, which are dropped) or a bare
    embedder's.

    Raises:
        ValueError: no embedder config in the checkpoint, or weights that do not fit it (naming the file).
    """

    def offline(cfg: EmbedderModelConfig) -> EmbedderModelConfig:
        return replace(cfg, init_checkpoint="", weights="none", classifier=replace(cfg.classifier, weights="none"))

    model, _ = load_model(checkpoint_path, EmbedderModelConfig, build_embedder, offline, state_prefix="embedder.",
                          map_location=map_location)  # fmt: skip
    return model
