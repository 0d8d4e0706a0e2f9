"""Evaluation loops keep nothing that lives in a DataLoader worker's shared memory.

Every shared tensor kept alive holds a file descriptor: `detector.train.predict` kept each image's
target as the worker sent it, and detector validation on 16k generated images failed with
"received 0 items of ancdata" (benchmarks/scale.py at N = 1000).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from imagesearch.detector.train import predict


class _Images(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = {"boxes": torch.tensor([[i, i, i + 10.0, i + 20.0]]), "labels": torch.tensor([1 + i % 2])}
        return torch.full((3, 8, 8), i, dtype=torch.uint8), target


class _Stand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]  # fmt: skip


def _collate(batch: list) -> tuple[torch.Tensor, list[dict]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def test_detector_predict_copies_the_targets_out_of_shared_memory() -> None:
    loader = DataLoader(_Images(), batch_size=2, num_workers=1, collate_fn=_collate)
    sent = next(iter(loader))[1][0]["boxes"]
    assert sent.is_shared()  # what a worker sends lives in shared memory
    predictions, truths = predict(_Stand(), loader)
    assert len(predictions) == len(truths) == 6
    assert not any(t[k].is_shared() for t in truths for k in t)
    assert [t["boxes"][0, 0].item() for t in truths] == [0, 1, 2, 3, 4, 5]
    assert [t["labels"].tolist() for t in truths] == [[1], [2], [1], [2], [1], [2]]
