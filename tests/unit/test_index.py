"""Gallery indexes: brute force against numpy all-pairs, FAISS against brute force, padding, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from imagesearch.matching.index import INDEXES, BruteForceIndex, FaissIndex, build_index


def _naive(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = ((q[:, None, :].astype(np.float64) - g[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def _data(m: int = 7, n: int = 53, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)  # continuous random data: no exact distance ties
    return rng.normal(size=(m, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize(("chunk_size", "dtype"), [(5, torch.float32), (4, torch.float64), (1000, torch.float32)])
def test_brute_force_matches_numpy(chunk_size: int, dtype: torch.dtype) -> None:
    q, g = _data()
    index = BruteForceIndex(chunk_size=chunk_size, dtype=dtype)  # 5 and 4 divide neither 7 nor 53
    index.add(g[:20])
    index.add(g[20:])  # two adds equal one
    assert len(index) == index.ntotal == 53
    dist, idx = index.search(q, 6)
    ref_d, ref_i = _naive(q, g, 6)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and dist.shape == idx.shape == (7, 6)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_brute_force_accepts_tensors() -> None:
    q, g = _data(3, 10, 4, seed=1)
    index = BruteForceIndex()
    index.add(torch.from_numpy(g))
    _, idx = index.search(torch.from_numpy(q), 2)
    np.testing.assert_array_equal(idx, _naive(q, g, 2)[1])


@pytest.mark.parametrize("name", ["brute", "faiss_flat"])
def test_k_larger_than_gallery_is_padded(name: str) -> None:
    index = build_index(name)
    index.add(np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]], np.float32))
    dist, idx = index.search(np.array([[0.0, 0.0]], np.float32), 5)
    np.testing.assert_array_equal(idx, [[0, 2, 1, -1, -1]])
    np.testing.assert_allclose(dist, [[0.0, 1.0, 9.0, np.inf, np.inf]])


@pytest.mark.parametrize("name", ["brute", "faiss_flat", "faiss_ivf"])
def test_empty_gallery_and_bad_queries(name: str) -> None:
    index = build_index(name)
    with pytest.raises(ValueError, match="empty"):
        index.search(np.zeros((1, 4), np.float32), 1)
    if name != "faiss_ivf":
        index.add(np.zeros((3, 4), np.float32))
        with pytest.raises(ValueError, match="dimension 5"):
            index.search(np.zeros((1, 5), np.float32), 1)
        with pytest.raises(ValueError, match="k must be"):
            index.search(np.zeros((1, 4), np.float32), 0)


def test_faiss_flat_agrees_with_brute_force() -> None:
    q, g = _data(20, 300, 16, seed=2)
    brute, flat = BruteForceIndex(chunk_size=64), FaissIndex("flat")
    brute.add(g)
    flat.add(g)
    bd, bi = brute.search(q, 10)
    fd, fi = flat.search(q, 10)
    np.testing.assert_array_equal(fi, bi)
    np.testing.assert_allclose(fd, bd, rtol=1e-4, atol=1e-4)


def test_faiss_ivf_recall_on_clustered_data() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=10.0, size=(16, 16))
    g = (centres[rng.integers(0, 16, 1600)] + rng.normal(size=(1600, 16))).astype(np.float32)
    q = (centres[rng.integers(0, 16, 50)] + rng.normal(size=(50, 16))).astype(np.float32)
    ivf = build_index("faiss_ivf", nlist=16, nprobe=4)
    ivf.add(g)
    _, approx = ivf.search(q, 10)
    _, exact = _naive(q, g, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9


def test_faiss_ivf_needs_nlist_vectors_to_train() -> None:
    with pytest.raises(ValueError, match="nlist=100"):
        FaissIndex("ivf", nlist=100).add(np.zeros((10, 4), np.float32))


def test_missing_faiss_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match=r"imagesearch\[faiss\]"):
        FaissIndex("flat")


def test_registry_names() -> None:
    assert sorted(INDEXES) == ["brute", "faiss_flat", "faiss_ivf"]
    with pytest.raises(ValueError, match="unknown index 'hnsw'"):
        build_index("hnsw")
