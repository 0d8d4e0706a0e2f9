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


def _tied(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)  # coordinates in {-1, 0, 1}: many exact ties, all distances exact
    return rng.integers(-1, 2, size=(m, 3)).astype(np.float32), rng.integers(-1, 2, size=(n, 3)).astype(np.float32)


def test_ties_go_to_the_lower_index_whatever_the_chunking() -> None:
    # One query at the origin, four gallery points at distance 1 (indices 1, 2, 4, 5) around a farther one.
    g = np.array([[2, 0], [1, 0], [0, 1], [0, 3], [-1, 0], [0, -1]], np.float32)
    for chunk_size in (1, 2, 4, 100):
        index = BruteForceIndex(chunk_size=chunk_size)
        index.add(g)
        dist, idx = index.search(np.zeros((1, 2), np.float32), 3)
        assert idx.tolist() == [[1, 2, 4]] and dist.tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    ("dtype", "rerank"), [(torch.float32, 0), (torch.float64, 0), (torch.float16, 4), (torch.bfloat16, 100)]
)
def test_brute_force_equals_numpy_on_ties_and_k_above_the_gallery(dtype: torch.dtype, rerank: int) -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        q, g = _tied(int(rng.integers(1, 12)), int(rng.integers(1, 40)), seed)
        k, chunk_size = int(rng.integers(1, 50)), int(rng.integers(1, 9))
        index = BruteForceIndex(chunk_size=chunk_size, dtype=dtype, rerank=rerank)
        index.add(g)
        dist, idx = index.search(q, k)
        found = min(k, len(g))
        ref_d, ref_i = _naive(q, g, found)
        np.testing.assert_array_equal(idx[:, :found], ref_i)
        np.testing.assert_array_equal(dist[:, :found], ref_d)  # small integers: exact in every dtype
        assert (idx[:, found:] == -1).all() and np.isinf(dist[:, found:]).all()


def test_half_precision_with_rerank_equals_float32() -> None:
    q, g = _data(60, 700, 32, seed=4)
    exact = BruteForceIndex(chunk_size=128)
    half = BruteForceIndex(chunk_size=128, dtype=torch.float16, rerank=50)
    plain_half = BruteForceIndex(chunk_size=128, dtype=torch.float16)
    for index in (exact, half, plain_half):
        index.add(g)
    ed, ei = exact.search(q, 10)
    hd, hi = half.search(q, 10)
    np.testing.assert_array_equal(hi, ei)
    np.testing.assert_allclose(hd, ed, rtol=1e-5, atol=1e-5)  # re-ranked in float32
    pd, _ = plain_half.search(q, 10)
    assert np.abs(pd - ed).max() > 1e-3  # without re-ranking the distances are float16's


def test_auto_device_follows_the_vectors() -> None:
    index = BruteForceIndex()  # "auto"
    assert index.device is None
    index.add(torch.zeros((2, 3)))
    assert index.device == torch.device("cpu")
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 3), np.nan, np.float32), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_equals_cpu_search() -> None:
    q, g = _data(500, 5000, 64, seed=5)
    tq, tg = _tied(200, 3000, seed=6)
    for queries, gallery in ((q, g), (tq, tg)):
        cpu, cuda = BruteForceIndex("cpu", chunk_size=1000), BruteForceIndex("auto", chunk_size=1000)
        cpu.add(gallery)
        cuda.add(torch.from_numpy(gallery).cuda())
        assert cuda.device.type == "cuda"
        cd, ci = cpu.search(queries, 20)
        gd, gi = cuda.search(torch.from_numpy(queries).cuda(), 20)
        np.testing.assert_array_equal(gi, ci)
        np.testing.assert_allclose(gd, cd, rtol=1e-4, atol=1e-4)


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
