"""Gallery search benchmark: our exact brute force against FAISS Flat and FAISS IVF (SPEC §4, issue 7).

    python benchmarks/search_index.py --sizes 10000 100000 1000000 --dim 512 --queries 1000 --k 20

For each gallery size N, on the same kind of random unit vectors (a three-level Gaussian mixture,
categories > items > images, see `make_data`, like the project's L2-normalised embeddings):
- `brute_fp32`: `imagesearch.matching.index.BruteForceIndex` (torch, chunked); on CUDA also `brute_fp16`;
- `faiss_flat`: `faiss.IndexFlatL2` (exact, CPU);
- `faiss_ivf`: `faiss.IndexIVFFlat` with nlist = `--nlist-factor` * sqrt(N) cells, k-means trained on
  `--train-per-list` * nlist sampled vectors for `--kmeans-iters` iterations, searched at each `--nprobe`.
Reported per method: build time (IVF: training and adding), search time (median after a warm-up) and
queries/s, recall@k against `brute_fp32` (|found ∩ exact| / k, averaged over queries), and memory: the
bytes of stored vectors (brute force) or of the serialised FAISS index, and the process's resident
memory change (VmRSS after the build minus before, and the peak over build and search, from /proc).

The gallery is generated in float32 chunks straight into one array, which the CPU brute force shares
(no copy); FAISS keeps its own copy, and each index is freed before the next is built, so the 1M run
holds about two copies (2 x 2 GB at D = 512), plus one more while BruteForceIndex searches: it
squares the whole gallery (`gallery * gallery`) for the norms, a temporary of the gallery's size.

Caveat: `imagesearch.matching.index.FaissIndex(kind="ivf")` trains on everything passed to its first
`add` with FAISS's defaults (up to 256 vectors per cell, 25 iterations): at N = 1M that is ~40x the
k-means work timed here. This benchmark uses FAISS directly to control the training sample.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

try:
    from benchmarks import _common
except ImportError:  # run as a script (python benchmarks/search_index.py): its folder is on sys.path
    import _common  # type: ignore[no-redef]
from imagesearch.matching.index import BruteForceIndex

NAME = "search_index"
COLUMNS = [
    ("n", "N", "d"),
    ("method", "method", "s"),
    ("nprobe", "nprobe", "d"),
    ("build_s", "build s", ".2f"),
    ("search_s", "search s", ".3f"),
    ("qps", "queries/s", ",.0f"),
    ("recall", "recall@k", ".4f"),
    ("index_mb", "index MB", ",.1f"),
    ("rss_delta_mb", "RSS +MB", ",.1f"),
    ("peak_rss_delta_mb", "peak +MB", ",.1f"),
]


def mixture(n: int, centers: np.ndarray, sigma: float, rng: np.random.Generator, chunk: int = 65536) -> np.ndarray:
    """`n` unit vectors from a Gaussian mixture around `centers`, generated chunk by chunk in float32.

    Args:
        n: number of vectors.
        centers: (C, D) float32 centres; each vector picks one uniformly.
        sigma: noise norm (per-coordinate std sigma / sqrt(D)); relative to unit centres.
        rng: the random stream.
        chunk: rows generated at a time (bounds the temporaries at chunk x D floats).

    Returns:
        (n, D) float32, rows L2-normalised.
    """
    dim = centers.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = out[start : start + chunk]
        rng.standard_normal(rows.shape, dtype=np.float32, out=rows)
        rows *= np.float32(sigma / math.sqrt(dim))
        rows += centers[rng.integers(len(centers), size=len(rows))]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def make_data(n: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """A gallery of `n` vectors and `args.queries` queries, shaped like product embeddings.

    Three levels: `args.categories` random unit category centres; n / `args.per_item` item centres
    around them (noise `args.item_sigma`); gallery vectors ("product images") and queries ("frame
    crops of the same items") around the items (noise `args.sigma`). A query's nearest neighbours are
    its item's images, then images of other items of its category: the hard cases of real retrieval,
    so an approximate index's recall@20 says something.

    Returns:
        gallery (n, D) and queries (Q, D), float32 unit rows.
    """
    rng = np.random.default_rng([args.seed, n])
    categories = rng.standard_normal((args.categories, args.dim), dtype=np.float32)
    categories /= np.linalg.norm(categories, axis=1, keepdims=True)
    items = mixture(max(1, n // args.per_item), categories, args.item_sigma, rng)
    return mixture(n, items, args.sigma, rng), mixture(args.queries, items, args.sigma, rng)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k for (Q, k) index arrays (-1 = nothing found, never a hit)."""
    hits = (found[:, :, None] == exact[:, None, :]) & (found[:, :, None] >= 0)
    return float(hits.any(axis=2).sum() / exact.size)


def _serialized_bytes(index: Any, faiss: Any) -> int:
    """Size of `faiss.write_index(index)`, counted through a callback, not held (2 GB at 1M x 512)."""
    total = [0]

    def count(chunk: bytes) -> int:
        total[0] += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total[0]


def _timed_search(search: Any, queries: np.ndarray, args: argparse.Namespace, sync: Any) -> tuple[dict, np.ndarray]:
    """Warm up on a few queries, then time full searches; returns the timing and the found indices."""
    warm = queries[: min(16, len(queries))]
    search(warm)
    result: list[np.ndarray] = []

    def run() -> None:
        result[:] = [search(queries)]

    timing = _common.time_call(run, warmup=0, repeat=args.repeat, budget_s=args.budget_s, sync=sync)
    return timing, result[0]


def _row(n: int, method: str, device: str, timing: dict, build_s: float, mem: dict, **extra: Any) -> dict:
    q = extra.pop("queries")
    return {
        "n": n,
        "method": method,
        "device": device,
        "build_s": build_s,
        "search_s": timing["median_s"],
        "search_times_s": timing["times_s"],
        "qps": q / timing["median_s"],
        **mem,
        **extra,
    }


def bench_brute(gallery: np.ndarray, queries: np.ndarray, args: argparse.Namespace, dtype: torch.dtype) -> tuple:
    """Our BruteForceIndex on `args.device` in `dtype`; returns (row, found indices)."""
    sync = _common.cuda_sync(args.device)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated()
    with _common.MemoryProbe() as mem:
        start = time.perf_counter()
        index = BruteForceIndex(device=args.device, dtype=dtype)
        index.add(gallery)
        if sync:
            sync()
        build_s = time.perf_counter() - start
        held = _common.rss_bytes() - mem.before
        timing, found = _timed_search(lambda q: index.search(q, args.k)[1], queries, args, sync)
    extra: dict[str, Any] = {}
    if cuda:
        extra = {
            "gpu_bytes": torch.cuda.memory_allocated() - gpu_before,
            "gpu_peak_bytes": torch.cuda.max_memory_allocated(),
        }
    name = "brute_fp16" if dtype == torch.float16 else "brute_fp32"
    itemsize = torch.empty((), dtype=dtype).element_size()
    memory = {"rss_delta_bytes": held, "peak_rss_delta_bytes": mem.peak_delta}
    stored = index.ntotal * gallery.shape[1] * itemsize
    row = _row(
        len(gallery), name, args.device, timing, build_s, memory, queries=len(queries), index_bytes=stored, **extra
    )
    return row, found


def bench_flat(gallery: np.ndarray, queries: np.ndarray, exact: np.ndarray, args: argparse.Namespace) -> dict:
    """FAISS IndexFlatL2 (exact, CPU); its row, with recall against `exact`."""
    import faiss

    with _common.MemoryProbe() as mem:
        start = time.perf_counter()
        flat = faiss.IndexFlatL2(gallery.shape[1])
        flat.add(gallery)
        build_s = time.perf_counter() - start
        held = _common.rss_bytes() - mem.before
        timing, found = _timed_search(lambda q: flat.search(q, args.k)[1], queries, args, None)
    memory = {"rss_delta_bytes": held, "peak_rss_delta_bytes": mem.peak_delta}
    size, recall = _serialized_bytes(flat, faiss), recall_at_k(found, exact)
    return _row(len(gallery), "faiss_flat", "cpu", timing, build_s, memory, queries=len(queries), index_bytes=size,
                recall=recall)  # fmt: skip


def bench_ivf(gallery: np.ndarray, queries: np.ndarray, exact: np.ndarray, args: argparse.Namespace) -> list[dict]:
    """FAISS IndexIVFFlat (CPU), built once and searched at each nprobe; rows with recall against `exact`."""
    import faiss

    n, dim = gallery.shape
    nlist = max(1, min(n // 39, round(args.nlist_factor * math.sqrt(n))))  # FAISS wants >= 39 points per cell
    rows = []
    with _common.MemoryProbe() as mem:
        start = time.perf_counter()
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2)
        ivf.cp.niter = args.kmeans_iters
        ivf.cp.max_points_per_centroid = args.train_per_list  # or FAISS would subsample the sample again
        sample = np.random.default_rng(args.seed + 1).choice(n, size=min(n, args.train_per_list * nlist), replace=False)
        ivf.train(gallery[np.sort(sample)])
        train_s = time.perf_counter() - start
        ivf.add(gallery)
        build_s = time.perf_counter() - start
        held = _common.rss_bytes() - mem.before
        for nprobe in sorted({min(p, nlist) for p in args.nprobe}):
            ivf.nprobe = nprobe
            timing, found = _timed_search(lambda q: ivf.search(q, args.k)[1], queries, args, None)
            params = {"nlist": nlist, "nprobe": nprobe, "train_s": train_s, "recall": recall_at_k(found, exact)}
            rows.append(_row(n, "faiss_ivf", "cpu", timing, build_s, {"rss_delta_bytes": held}, queries=len(queries),
                             **params))  # fmt: skip
    size = _serialized_bytes(ivf, faiss)
    return [row | {"index_bytes": size, "peak_rss_delta_bytes": mem.peak_delta} for row in rows]


def run_size(n: int, args: argparse.Namespace) -> list[dict]:
    """All methods on one gallery of `n` vectors; the exact reference is our fp32 brute force."""
    start = time.perf_counter()
    gallery, queries = make_data(n, args)
    _log(f"N={n}: gallery generated in {time.perf_counter() - start:.1f}s; brute force fp32 on {args.device}")
    row, exact = bench_brute(gallery, queries, args, torch.float32)
    rows = [row | {"recall": 1.0}]
    if torch.device(args.device).type == "cuda":
        _log(f"N={n}: brute force fp16")
        row, found = bench_brute(gallery, queries, args, torch.float16)
        rows.append(row | {"recall": recall_at_k(found, exact)})
    gc.collect()
    _log(f"N={n}: FAISS Flat and IVF")
    rows.append(bench_flat(gallery, queries, exact, args))
    gc.collect()  # the Flat copy goes before IVF makes its own
    rows += bench_ivf(gallery, queries, exact, args)
    del gallery
    gc.collect()
    return rows


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="gallery sizes N")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension D")
    parser.add_argument("--queries", type=int, default=1000, help="query vectors (drawn from the same mixture)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per query (recall@k)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the brute force runs (FAISS is CPU)")
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/results/search_index-<device>.json)")
    parser.add_argument("--categories", type=int, default=100, help="top-level mixture components")
    parser.add_argument("--per-item", type=int, default=10, help="gallery vectors per item (on average)")
    parser.add_argument("--item-sigma", type=float, default=0.7, help="item centres' noise around their category")
    parser.add_argument("--sigma", type=float, default=0.5, help="vectors' noise around their item centre")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64], help="IVF cells visited per query")
    parser.add_argument("--nlist-factor", type=float, default=4.0, help="IVF cells = factor * sqrt(N)")
    parser.add_argument("--train-per-list", type=int, default=39, help="IVF k-means training vectors per cell")
    parser.add_argument("--kmeans-iters", type=int, default=10, help="IVF k-means iterations")
    parser.add_argument("--repeat", type=int, default=3, help="timed searches per method (median reported)")
    parser.add_argument("--budget-s", type=float, default=10.0, help="stop repeating a search after this many s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    if min(args.sizes) < args.k or args.k < 1:
        parser.error(f"--k {args.k} must be >= 1 and at most the smallest size {min(args.sizes)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the written record's payload."""
    args = parse_args(argv)
    wall = time.perf_counter()
    rows = [row for n in args.sizes for row in run_size(n, args)]
    for row in rows:  # for the table only; the JSON keeps bytes
        for key in ("index", "rss_delta", "peak_rss_delta"):
            value = row.get(f"{key}_bytes")
            row[f"{key}_mb"] = None if value is None else value / 2**20
    payload = {
        "command": "python benchmarks/search_index.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": vars(args),
        "machine": _common.machine_info(args.device),
        "results": rows,
        "wall_s": time.perf_counter() - wall,
    }
    path = _common.write_result(NAME, args.device, payload, args.out)
    print(_common.format_table(rows, COLUMNS))
    print(f"wall {payload['wall_s']:.1f}s; results in {path}")
    return payload


if __name__ == "__main__":
    main()
