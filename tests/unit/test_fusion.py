"""Feature fusion: the distance identity, weight-0 parts, and the choice of the LBP weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagesearch.evaluation.fusion import choose_fusion_weight
from imagesearch.features.fusion import fuse


def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_fused_distance_is_weighted_mean_of_part_distances() -> None:
    rng = np.random.default_rng(0)
    a = {"global": rng.normal(size=(5, 6)), "lbp": rng.random((5, 4))}
    b = {"global": rng.normal(size=(5, 6)), "lbp": rng.random((5, 4))}
    weights = {"global": 1.0, "lbp": 0.3}
    fa, fb = fuse(a, weights), fuse(b, weights)
    fused_sq = ((fa - fb) ** 2).sum(axis=1)
    parts_sq = sum(
        w / 1.3 * ((_unit(a[k].tolist()) - _unit(b[k].tolist())) ** 2).sum(axis=1) for k, w in weights.items()
    )
    np.testing.assert_allclose(fused_sq, parts_sq, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fa, axis=1), 1.0, rtol=1e-6)  # unit norm after the 1/sqrt(W)


def test_hand_worked_fusion_and_weight_zero_drops_part() -> None:
    parts = {"global": np.array([[3.0, 4.0]]), "lbp": np.array([[0.0, 5.0]])}
    # [0.6, 0.8] * sqrt(1/1.25) and [0, 1] * sqrt(0.25/1.25)
    out = fuse(parts, {"global": 1.0, "lbp": 0.25})
    np.testing.assert_allclose(out, [[0.6 * np.sqrt(0.8), 0.8 * np.sqrt(0.8), 0.0, np.sqrt(0.2)]], rtol=1e-6)
    dropped = fuse(parts, {"global": 1.0, "lbp": 0.0})
    assert dropped.shape == (1, 2) and isinstance(dropped, np.ndarray) and dropped.dtype == np.float32


def test_fuse_torch_input_gives_torch() -> None:
    parts = {"global": torch.tensor([[0.0, 2.0]]), "lbp": np.array([[1.0, 0.0, 0.0]])}
    out = fuse(parts, {"global": 3.0, "lbp": 1.0})
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.75**0.5, 0.5, 0.0, 0.0]]))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"global": 1.0}, "missing"),
        ({"global": 1.0, "lbp": 0.1, "hsv": 0.2}, "unknown"),
        ({"global": 1.0, "lbp": -0.1}, ">= 0"),
        ({"global": 0.0, "lbp": 0.0}, "all 0"),
    ],
)
def test_fuse_bad_weights(weights: dict[str, float], message: str) -> None:
    parts = {"global": np.ones((2, 3)), "lbp": np.ones((2, 4))}
    with pytest.raises(ValueError, match=message):
        fuse(parts, weights)


# Two items A, B with one gallery row each: global A=[1,0], B=[0,1]; LBP A=[1,0], B=[0,1].
# For a query with global [c, s] and LBP l, the fused squared distances (times 1 + w) are
#   to A: (2 - 2c) + w * |l - lbp_A|^2,   to B: (2 - 2s) + w * |l - lbp_B|^2.
GALLERY = {"global": np.array([[1.0, 0.0], [0.0, 1.0]]), "lbp": np.array([[1.0, 0.0], [0.0, 1.0]])}
GALLERY_LABELS = ["A", "B"]
CANDIDATES = (0.0, 0.1, 0.3, 0.5)


def test_choose_weight_when_lbp_helps() -> None:
    # Query of A: global [0.6, 0.8] (closer to B), LBP exactly A's. To A: 0.8; to B: 0.4 + 2w.
    # Right iff w > 0.2. Query of B: global and LBP exactly B's, always right.
    queries = {"global": np.array([[0.6, 0.8], [0.0, 1.0]]), "lbp": np.array([[1.0, 0.0], [0.0, 1.0]])}
    best, table = choose_fusion_weight(queries, GALLERY, ["A", "B"], GALLERY_LABELS, candidates=CANDIDATES)
    assert [row["weight"] for row in table] == [0.0, 0.1, 0.3, 0.5]
    assert [row["top1"] for row in table] == [0.5, 0.5, 1.0, 1.0]
    assert best == 0.3  # 0.3 and 0.5 tie: the smaller weight


def test_choose_weight_when_lbp_hurts() -> None:
    # Query of A: global [0.8, 0.6] (right, to A 0.4, to B 0.8), LBP exactly B's: to A 0.4 + 2w,
    # to B 0.8. Right iff w < 0.2. Query of B exact again.
    queries = {"global": np.array([[0.8, 0.6], [0.0, 1.0]]), "lbp": np.array([[0.0, 1.0], [0.0, 1.0]])}
    best, table = choose_fusion_weight(queries, GALLERY, ["A", "B"], GALLERY_LABELS, candidates=(0.5, 0.1, 0.3))
    assert [row["weight"] for row in table] == [0.0, 0.1, 0.3, 0.5]  # 0 added, sorted
    assert [row["top1"] for row in table] == [1.0, 1.0, 0.5, 0.5]
    assert best == 0.0  # 0 and 0.1 tie: the global feature alone


def test_choose_weight_checks_keys() -> None:
    with pytest.raises(ValueError, match="exactly the keys"):
        choose_fusion_weight({"global": np.ones((1, 2))}, GALLERY, ["A"], GALLERY_LABELS)


def test_choose_weight_on_tensors_follows_their_device() -> None:
    queries = {"global": np.array([[0.6, 0.8], [0.0, 1.0]]), "lbp": np.array([[1.0, 0.0], [0.0, 1.0]])}
    tensors = {k: torch.from_numpy(v) for k, v in queries.items()}
    gallery = {k: torch.from_numpy(v) for k, v in GALLERY.items()}
    args = (["A", "B"], GALLERY_LABELS, CANDIDATES)
    assert choose_fusion_weight(tensors, gallery, *args) == choose_fusion_weight(queries, GALLERY, *args)
    assert choose_fusion_weight(tensors, gallery, *args, device="cpu")[0] == 0.3
