"""Chunked retrieval metrics from embeddings: hand-worked cases, ties, and the dense path as oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imagesearch.metrics.retrieval import embedding_retrieval_metrics, mean_average_precision, recall_at_k

KS = (1, 2, 5, 100)


def dense(queries: np.ndarray, q_labels, gallery: np.ndarray, g_labels, ks=KS) -> dict[str, float]:
    """Today's validation: a float64 cdist, stable argsort for recall@k, scikit-learn per query for AP."""
    dist = torch.cdist(torch.as_tensor(queries).double(), torch.as_tensor(gallery).double())
    return {**recall_at_k(dist, q_labels, g_labels, ks=ks), "map": mean_average_precision(dist, q_labels, g_labels)}


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert math.isclose(got[key], want[key], rel_tol=1e-12, abs_tol=1e-12), (key, got, want)


def test_hand_worked_points_on_a_line() -> None:
    # Gallery at 0 (a), 1 (b), 3 (a), 6 (c). Query "a" at 1.2: order b (0.2), a (1.2), a (1.8), c:
    # first hit at rank 2, AP = (1/2 + 2/3) / 2. Query "c" at 5: order c (1), a (2), ...: AP 1.
    # Query "d": no positive, recall 0 and AP 0.
    gallery = np.array([[0.0], [1.0], [3.0], [6.0]])
    queries = np.array([[1.2], [5.0], [0.0]])
    m = embedding_retrieval_metrics(queries, ["a", "c", "d"], gallery, ["a", "b", "a", "c"], ks=(1, 2, 3))
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 + 0) / 3, rel=1e-12)


@pytest.mark.parametrize(("g_labels", "recall1"), [(["b", "a"], 0.0), (["a", "b"], 1.0)])
def test_ties_follow_the_dense_rules(g_labels: list[str], recall1: float) -> None:
    # The query at 0 is at distance 1 from both gallery points. recall@k breaks the tie by gallery
    # index (lower first); AP scores the tied pair as one block: precision 1/2 at recall 1.
    m = embedding_retrieval_metrics([[0.0]], ["a"], [[-1.0], [1.0]], g_labels, ks=(1, 2))
    assert m == {"recall@1": recall1, "recall@2": 1.0, "map": 0.5}


def test_ideal_embeddings_and_absent_labels() -> None:
    eye = np.eye(4)
    g_labels = np.array([0, 1, 2, 3, 1])
    q_labels = np.array([3, 1, 0, 2])
    ideal = embedding_retrieval_metrics(eye[q_labels], q_labels, eye[g_labels], g_labels, ks=(1, 5))
    assert ideal == {"recall@1": 1.0, "recall@5": 1.0, "map": 1.0}
    absent = embedding_retrieval_metrics(eye[q_labels], [9, 9, 9, 9], eye[g_labels], g_labels, ks=(1, 5))
    assert absent == {"recall@1": 0.0, "recall@5": 0.0, "map": 0.0}


@pytest.mark.parametrize("chunk_size", [0, 1, 3, 64])
def test_equals_dense_path_on_tied_integer_points(chunk_size: int) -> None:
    # Small integer coordinates: many exact distance ties, all distances exact in float64.
    rng = np.random.default_rng(0)
    for _ in range(10):
        q, g = rng.integers(1, 30), rng.integers(1, 40)
        queries = rng.integers(-2, 3, size=(q, 3)).astype(np.float32)
        gallery = rng.integers(-2, 3, size=(g, 3)).astype(np.float32)
        q_labels, g_labels = rng.integers(0, 6, size=q).astype(str), rng.integers(0, 5, size=g).astype(str)
        got = embedding_retrieval_metrics(queries, q_labels, gallery, g_labels, ks=KS, chunk_size=chunk_size)
        assert_same(got, dense(queries, q_labels, gallery, g_labels))


@pytest.mark.parametrize("dtype", [None, torch.float32])
def test_equals_dense_path_on_random_embeddings(dtype: torch.dtype | None) -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        q, g = rng.integers(20, 120), rng.integers(20, 200)
        queries = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(q, 16))).float(), dim=1)
        gallery = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(g, 16))).float(), dim=1)
        q_labels, g_labels = rng.integers(0, 30, size=q), rng.integers(0, 25, size=g)
        got = embedding_retrieval_metrics(queries, q_labels, gallery, g_labels, ks=KS, chunk_size=7, dtype=dtype)
        assert_same(got, dense(queries.numpy(), q_labels, gallery.numpy(), g_labels))


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="dimension"):
        embedding_retrieval_metrics(np.zeros((2, 3)), ["a", "b"], np.zeros((2, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        embedding_retrieval_metrics(np.zeros((2, 3)), ["a"], np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        embedding_retrieval_metrics(np.zeros((0, 3)), [], np.zeros((2, 3)), ["a", "b"])
