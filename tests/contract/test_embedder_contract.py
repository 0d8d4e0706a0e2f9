"""Embedder contract: the smoke configs build models with the promised shapes, loss dicts and round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from imagesearch.checkpoint import save_checkpoint
from imagesearch.config import config_to_dict, load_config
from imagesearch.embedder.loss import EmbedderWithLoss, build_loss
from imagesearch.embedder.model import build_embedder, load_embedder
from imagesearch.embedder.train import EmbedderRun
from imagesearch.engine import default_forward

REPO = Path(__file__).resolve().parents[2]
SMOKE = {"triplet": "embedder.yaml", "arcface": "embedder_arcface.yaml"}


def smoke(name: str) -> EmbedderRun:
    return load_config(EmbedderRun, REPO / "configs" / "smoke" / SMOKE[name])


@pytest.mark.parametrize("name", ["triplet", "arcface"])
def test_smoke_embedder_shapes_norms_and_loss_dict(name: str) -> None:
    run = smoke(name)
    assert run.loss.name == name
    torch.manual_seed(0)
    embedder = build_embedder(run.model)
    s, d = run.model.image_size, run.model.embed_dim
    x = torch.randn(8, 3, s, s)
    out = embedder.embed(x)
    assert out.shape == (8, d) and out.dtype == torch.float32 and embedder.embed_dim == d
    torch.testing.assert_close(out.norm(dim=1), torch.ones(8))
    assert embedder.forward_features(x).shape[-2:] == (s // 32, s // 32)

    model = EmbedderWithLoss(embedder, build_loss(run.loss, num_classes=4, embed_dim=d)).train()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    batch = (x, labels, torch.tensor([[0, 2], [1, 3], [4, 6]])) if name == "triplet" else (x, labels)
    losses = default_forward(model, batch, torch.device("cpu"))
    assert list(losses) == [name] and losses[name].ndim == 0 and math.isfinite(float(losses[name].detach()))
    losses[name].backward()
    assert all(p.grad is not None for p in embedder.parameters() if p.requires_grad)
    if name == "arcface":
        assert model.criterion.loss.W.grad is not None


def test_state_dict_round_trip_gives_identical_embeddings(tmp_path: Path) -> None:
    run = smoke("triplet")
    torch.manual_seed(1)
    embedder = build_embedder(run.model)
    x = torch.randn(4, 3, run.model.image_size, run.model.image_size)
    torch.manual_seed(2)
    other = build_embedder(run.model)
    assert not torch.allclose(other.embed(x), embedder.embed(x))
    other.load_state_dict(embedder.state_dict())
    torch.testing.assert_close(other.embed(x), embedder.embed(x), rtol=0, atol=0)
    path = save_checkpoint(tmp_path / "e.pt", {"model": embedder.state_dict(), "config": config_to_dict(run)})
    torch.testing.assert_close(load_embedder(path).embed(x), embedder.embed(x), rtol=0, atol=0)
