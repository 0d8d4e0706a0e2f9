"""Overfit one fixed batch with a tiny embedder: the triplet loss must fall below 10% of its start."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from imagesearch.classifier.model import ClassifierModelConfig
from imagesearch.embedder.loss import EmbedderWithLoss, LossConfig, build_loss
from imagesearch.embedder.model import EmbedderModelConfig, build_embedder

P, K, SIZE = 4, 4, 32


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """P identities x K crops: each identity a random 4x4 colour pattern (upsampled), each crop with noise."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(P, 3, 4, 4, generator=g).repeat_interleave(SIZE // 4, -1).repeat_interleave(SIZE // 4, -2)
    images = patterns.repeat_interleave(K, 0) + 0.3 * torch.randn(P * K, 3, SIZE, SIZE, generator=g)
    return (images - 0.5) / 0.25, torch.arange(P).repeat_interleave(K)


@pytest.mark.parametrize("miner", ["none", "batch_hard"])
def test_overfit_one_batch(miner: str) -> None:
    torch.manual_seed(0)
    tiny = ClassifierModelConfig(width_mult=0.0625, inception_width_mult=0.0625, num_blocks=1)
    cfg = EmbedderModelConfig(
        classifier=tiny, embed_dim=16, image_size=SIZE, train_parts=["trunk", "neck", "blocks", "pool", "proj"]
    )
    model = EmbedderWithLoss(build_embedder(cfg), build_loss(replace(LossConfig(), miner=miner), P, 16)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images, labels = fixed_batch()
    history = []
    for _ in range(150):
        loss = model(images, labels)["triplet"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if loss.item() < 0.05 * history[0]:
            break
    assert history[0] > 0.1  # a real start: the untrained embedding violates the margin
    assert min(history[-5:]) < 0.1 * history[0], history[::10]
