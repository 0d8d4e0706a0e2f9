"""Embedder losses against hand-worked values and independent implementations (explicit loops, torch.nn)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imagesearch.embedder.loss import (
    ArcFaceConfig,
    ArcFaceCriterion,
    EmbedderWithLoss,
    LossConfig,
    TripletCriterion,
    build_loss,
)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def test_triplet_loss_hand_worked_on_the_unit_circle():
    # rows: (1,0), (0,1), (-1,0). Triplet (0,1,2): d_ap = sqrt 2, d_an = 2 -> max(sqrt2 - 2 + 0.3, 0) = 0.
    # Triplet (0,2,1): d_ap = 2, d_an = sqrt 2 -> 2 - sqrt 2 + 0.3. Mean over both triplets (zeros included).
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    triplets = torch.tensor([[0, 0], [1, 2], [2, 1]])
    loss = TripletCriterion(margin=0.3)(emb, torch.tensor([0, 0, 1]), triplets)
    assert math.isclose(loss.item(), (2 - math.sqrt(2) + 0.3) / 2, rel_tol=1e-6)


def test_fixed_triplets_match_a_loop_and_torch_triplet_margin_loss():
    emb = unit(12, 8, seed=0)
    labels = torch.arange(12) // 3
    triplets = torch.tensor([[0, 3, 6, 9, 1], [1, 4, 7, 10, 2], [5, 8, 11, 0, 9]])
    ours = TripletCriterion(margin=0.4)(emb, labels, triplets)
    loop = np.mean(
        [max(float((emb[a] - emb[p]).norm() - (emb[a] - emb[n]).norm()) + 0.4, 0.0) for a, p, n in triplets.T.tolist()]
    )
    assert ours.item() == pytest.approx(loop, rel=1e-5)
    a, p, n = (emb[i] for i in triplets)
    # torch adds eps=1e-6 inside the norm, so it differs by ~1e-6
    assert ours.item() == pytest.approx(nn.TripletMarginLoss(margin=0.4)(a, p, n).item(), abs=1e-5)


def test_batch_hard_matches_a_loop():
    emb, labels, margin = unit(12, 6, seed=1), torch.arange(12) % 4, 0.3
    dist = torch.cdist(emb.double(), emb.double())
    terms = []
    for i in range(12):
        pos = [j for j in range(12) if labels[j] == labels[i] and j != i]
        neg = [j for j in range(12) if labels[j] != labels[i]]
        terms.append(max(float(dist[i, pos].max() - dist[i, neg].min()) + margin, 0.0))
    ours = TripletCriterion(margin, miner="batch_hard")(emb, labels)
    assert ours.item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_semihard_matches_a_loop():
    emb, labels, margin = unit(12, 4, seed=2), torch.arange(12) % 3, 0.5
    dist = torch.cdist(emb.double(), emb.double())
    terms = []
    for a, p, n in itertools.permutations(range(12), 3):
        if labels[a] == labels[p] and labels[a] != labels[n]:
            d_ap, d_an = float(dist[a, p]), float(dist[a, n])
            if d_ap < d_an < d_ap + margin:  # semi-hard: farther than the positive, inside the margin
                terms.append(d_ap - d_an + margin)
    assert len(terms) > 5
    ours = TripletCriterion(margin, miner="semihard")(emb, labels)
    assert ours.item() == pytest.approx(np.mean(terms), rel=1e-4)


def test_ideal_one_hot_embeddings_give_zero_triplet_loss():
    labels = torch.arange(8) // 2
    emb = F.one_hot(labels, 4).float()  # same item: distance 0; other items: sqrt 2 > margin
    for miner in ("none", "batch_hard", "semihard"):
        assert TripletCriterion(0.5, miner)(emb, labels).item() == 0.0


def test_arcface_matches_the_formula():
    cfg = ArcFaceConfig(scale=16.0, margin=20.0)
    crit = ArcFaceCriterion(num_classes=5, embed_dim=8, cfg=cfg)
    emb, labels = unit(6, 8, seed=3), torch.tensor([0, 1, 2, 3, 4, 0])
    w = F.normalize(crit.loss.W.detach(), dim=0)  # (D, classes)
    cos = (emb @ w).clamp(-1, 1)
    m = math.radians(cfg.margin)
    theta = torch.acos(cos[torch.arange(6), labels])
    target = torch.where(theta <= math.pi - m, torch.cos(theta + m), torch.cos(theta) - m * math.sin(m))
    logits = cos.clone()
    logits[torch.arange(6), labels] = target
    expected = F.cross_entropy(cfg.scale * logits, labels)
    assert crit(emb, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_build_loss_and_wrapper_dict():
    embedder = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    images, labels = torch.randn(6, 3, 2, 2), torch.tensor([0, 0, 1, 1, 2, 2])
    triplet = EmbedderWithLoss(embedder, build_loss(LossConfig(miner="batch_hard"), 3, 4))
    out = triplet(images, labels)
    assert list(out) == ["triplet"] and out["triplet"].ndim == 0 and torch.isfinite(out["triplet"])
    arc = EmbedderWithLoss(embedder, build_loss(LossConfig(name="arcface"), 3, 4))
    assert list(arc(images, labels)) == ["arcface"]
    assert "criterion.loss.W" in arc.state_dict() and arc.state_dict()["criterion.loss.W"].shape == (4, 3)
    assert any(p is arc.criterion.loss.W for p in arc.parameters())  # reaches the optimizer by default
    with pytest.raises(ValueError, match="loss.name"):
        build_loss(LossConfig(name="contrastive"), 3, 4)
    with pytest.raises(ValueError, match="loss.miner"):
        build_loss(LossConfig(miner="batch_all"), 3, 4)
    with pytest.raises(ValueError, match="ArcFace takes none"):
        build_loss(LossConfig(name="arcface", miner="semihard"), 3, 4)


def test_arcface_weights_stay_float32_under_autocast():
    # PML casts its class weights to the embeddings' dtype in place; the wrapper feeds it float32.
    model = EmbedderWithLoss(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 4)), build_loss(LossConfig(name="arcface"), 3, 4)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(6, 3, 2, 2), torch.tensor([0, 0, 1, 1, 2, 2]))
    out["arcface"].backward()
    assert out["arcface"].dtype == torch.float32
    assert model.criterion.loss.W.dtype == model.criterion.loss.W.grad.dtype == torch.float32
