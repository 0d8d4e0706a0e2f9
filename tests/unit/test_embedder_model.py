"""The embedder model: unit-norm output, trainable parts, classifier init, torchvision backbones, embed_crops."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from imagesearch.checkpoint import save_checkpoint
from imagesearch.classifier.model import ClassifierModelConfig, build_classifier
from imagesearch.config import config_to_dict
from imagesearch.data.augment import crop_transform
from imagesearch.embedder.model import EmbedderModelConfig, build_embedder, load_embedder

TINY = ClassifierModelConfig(width_mult=0.0625, inception_width_mult=0.0625, num_blocks=1, num_classes=5)


def tiny_cfg(**kwargs) -> EmbedderModelConfig:
    return replace(EmbedderModelConfig(classifier=TINY, image_size=32, embed_dim=8), **kwargs)


def trainable(model: torch.nn.Module) -> set[str]:
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_embeddings_are_unit_norm_with_and_without_projection():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    for embed_dim, pool, expected_dim in ((8, "gem", 8), (0, "avg", 96)):  # 96 = 6 * round(256 / 16)
        model = build_embedder(tiny_cfg(embed_dim=embed_dim, pool=pool))
        assert model.embed_dim == expected_dim
        out = model(x)
        assert out.shape == (3, expected_dim) and out.dtype == torch.float32
        torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
        assert model.forward_features(x).shape == (3, 96, 1, 1)


def test_train_parts_freeze_the_rest():
    model = build_embedder(tiny_cfg(train_parts=["blocks", "proj"]))
    assert trainable(model) == {"blocks", "proj"}
    assert isinstance(model.trunk[1], FrozenBatchNorm2d) and isinstance(model.neck[1], FrozenBatchNorm2d)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.blocks.modules())
    deep = build_embedder(tiny_cfg(train_parts=["blocks.0.branch0"], embed_dim=0))
    assert {n for n, p in deep.named_parameters() if p.requires_grad} == {
        "blocks.0.branch0.0.weight", "blocks.0.branch0.1.weight", "blocks.0.branch0.1.bias",
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown parts \['head'\]"):
        build_embedder(tiny_cfg(train_parts=["head"]))


def test_frozen_parts_keep_their_outputs_in_train_mode():
    model = build_embedder(tiny_cfg(train_parts=["proj"]))
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    before = model(x)
    model.train()
    torch.testing.assert_close(model(x), before)  # no BatchNorm uses batch statistics


def test_init_from_classifier_checkpoint_and_load_embedder_round_trip(tmp_path):
    torch.manual_seed(1)
    clf_cfg = replace(TINY, pool="avg", freeze_trunk=True)
    classifier = build_classifier(clf_cfg)
    for p in classifier.parameters():  # make the weights differ from any fresh init
        p.data.add_(0.1)
    ckpt = tmp_path / "classifier.pt"
    save_checkpoint(ckpt, {"model": classifier.state_dict(), "config": {"model": config_to_dict(clf_cfg)}})
    # the config's own classifier section differs: the checkpoint's architecture wins
    cfg = tiny_cfg(init_checkpoint=str(ckpt), classifier=replace(TINY, num_blocks=3), train_parts=["blocks", "proj"])
    model = build_embedder(cfg)
    assert model.cfg.classifier.num_blocks == 1 and model.cfg.init_checkpoint == str(ckpt)
    torch.testing.assert_close(model.trunk[0].weight, classifier.trunk[0].weight)
    torch.testing.assert_close(model.blocks[0].branch0[0].weight, classifier.blocks[0].branch0[0].weight)

    path = tmp_path / "embedder.pt"
    state = {f"embedder.{k}": v for k, v in model.state_dict().items()} | {"criterion.loss.W": torch.zeros(8, 3)}
    save_checkpoint(path, {"model": state, "config": {"model": config_to_dict(model.cfg)}})
    ckpt.unlink()  # load_embedder must not need the init checkpoint any more
    loaded = load_embedder(path)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.embed(x), model.embed(x))
    assert not loaded.training


def test_torchvision_backbone_by_name():
    cfg = EmbedderModelConfig(backbone="torchvision:resnet18", embed_dim=16, train_parts=["trunk.layer4", "proj"])
    model = build_embedder(cfg)
    assert trainable(model) == {"trunk", "proj"}
    assert all(n.startswith(("trunk.layer4.", "proj.")) for n, p in model.named_parameters() if p.requires_grad)
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[1] == 512
    out = model.embed(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="torchvision has no model"):
        build_embedder(EmbedderModelConfig(backbone="torchvision:resnet_nonexistent"))
    with pytest.raises(ValueError, match="model.backbone"):
        build_embedder(EmbedderModelConfig(backbone="inception_v9"))


def test_embed_crops_resizes_normalises_and_batches():
    model = build_embedder(tiny_cfg())
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 20), (32, 32), (15, 70))]
    out = model.embed_crops(crops, batch_size=2)
    assert out.shape == (3, 8)
    t = crop_transform(32, train=False)
    expected = model.embed(torch.stack([t(image=c)["image"] for c in crops]))
    torch.testing.assert_close(out, expected)
    assert model.training  # embed restores the mode
    assert model.embed_crops([]).shape == (0, 8)


def test_torchvision_backbone_from_a_local_weights_file(tmp_path):
    torch.manual_seed(3)
    net = torchvision.models.mobilenet_v3_small(weights=None)
    torch.save({"model": net.state_dict()}, tmp_path / "mnv3.pth")
    model = build_embedder(
        EmbedderModelConfig(
            backbone="torchvision:mobilenet_v3_small", weights=str(tmp_path / "mnv3.pth"), train_parts=[]
        )
    )
    torch.testing.assert_close(model.trunk[0][0].weight, net.features[0][0].weight)
    assert model.embed_dim == 576 and trainable(model) == set()
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit torchvision 'mobilenet_v3_small'"):
        build_embedder(
            EmbedderModelConfig(backbone="torchvision:mobilenet_v3_small", weights=str(tmp_path / "bad.pth"))
        )
