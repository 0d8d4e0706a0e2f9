"""Embedder validation: frame crops (queries) against product crops (gallery); ideal and hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imagesearch.data.crops import CropRecord
from imagesearch.embedder import data as embedder_data
from imagesearch.embedder.data import EmbedderDataConfig, RetrievalSet, build_retrieval_set
from imagesearch.embedder.train import EmbedderRun, check_run, evaluate_embedder, retrieval_metrics


class IdealOneHotModel(nn.Module):
    """Reads the item index written into every pixel of an image and returns its one-hot vector."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.dummy = nn.Parameter(torch.zeros(1))  # evaluate_embedder finds the device from a parameter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.one_hot(images[:, 0, 0, 0].round().long(), self.num_items).float() + 0 * self.dummy


def loader_of(item_indices: list[int]) -> DataLoader:
    images = torch.tensor(item_indices, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    return DataLoader(TensorDataset(images, torch.zeros(len(item_indices))), batch_size=2)


def test_ideal_one_hot_embedding_gives_recall_1():
    items = ["000010", "000011", "000012", "000013"]
    queries, gallery = [0, 0, 1, 2, 3, 3], [3, 2, 1, 0, 0, 1, 2]
    retrieval = RetrievalSet(
        queries=loader_of(queries), gallery=loader_of(gallery),
        query_labels=[items[i] for i in queries], gallery_labels=[items[i] for i in gallery],
    )  # fmt: skip
    metrics = evaluate_embedder(IdealOneHotModel(4), retrieval, progress=False)
    assert metrics == {"val/recall@1": 1.0, "val/recall@5": 1.0, "val/recall@20": 1.0, "val/map": 1.0}


def test_retrieval_metrics_hand_worked():
    # Gallery on the unit circle at 0, 90, 180 degrees, labels a, b, a. Query "a" at 80 degrees: nearest is
    # b (10 deg), then a at 0 (80 deg), then a at 180: recall@1 0, recall@5 1, AP = (1/2 + 2/3) / 2.
    # Query "b" at 100 degrees: nearest b: recall@1 1, AP 1.
    def at(deg: float) -> list[float]:
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    gallery = torch.tensor([at(0), at(90), at(180)])
    queries = torch.tensor([at(80), at(100)])
    m = retrieval_metrics(queries, ["a", "b"], gallery, ["a", "b", "a"])
    assert m["val/recall@1"] == 0.5 and m["val/recall@5"] == 1.0 and m["val/recall@20"] == 1.0
    assert math.isclose(m["val/map"], ((1 / 2 + 2 / 3) / 2 + 1.0) / 2, rel_tol=1e-9)


def test_check_run_rejects_mined_losses_on_fixed_triplets():
    run = EmbedderRun()
    check_run(run)  # the defaults: fixed triplets, no miner
    run.loss.miner = "batch_hard"
    with pytest.raises(ValueError, match="data.sampler 'triplet'"):
        check_run(run)


def test_val_budget_scores_a_fixed_seeded_subset_of_queries(monkeypatch, tmp_path):
    frames = [
        CropRecord(f"f{i}.jpg", "frame", f"item{i % 3}", 1 + i % 3, "x", 0, (0.0, 0.0, 1.0, 1.0)) for i in range(10)
    ]
    images = [CropRecord(f"i{i}.jpg", "image", f"item{i}", 1 + i, "x", 0, (0.0, 0.0, 1.0, 1.0)) for i in range(3)]
    monkeypatch.setattr(embedder_data, "load_identity_crops", lambda root, cfg: (tmp_path, frames + images))

    def queries(budget: int, seed: int) -> list[str]:
        cfg = EmbedderDataConfig(val_budget=budget, num_workers=0)
        retrieval = build_retrieval_set("split", cfg, image_size=8, seed=seed)
        assert retrieval.gallery_labels == ["item0", "item1", "item2"]  # the gallery is always whole
        assert len(retrieval.queries.dataset) == len(retrieval.query_labels)
        return [r.file for r in retrieval.queries.dataset.records]

    subset = queries(4, seed=0)
    assert len(subset) == 4 and subset == queries(4, seed=0)  # the same queries at every evaluation
    assert subset == sorted(subset, key=lambda f: int(f[1:-4]))  # kept in split order
    assert {tuple(queries(4, seed=s)) for s in range(5)} != {tuple(subset)}  # the seed draws them
    assert queries(0, seed=0) == queries(10, seed=0) == [r.file for r in frames]
