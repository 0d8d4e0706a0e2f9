"""Gallery k-nearest-neighbour indexes under squared Euclidean distance (SPEC §3 stage 7, §4).

`BruteForceIndex` is exact (the original's brute force), in torch, chunked so that a large gallery
fits in memory; `FaissIndex` wraps faiss-cpu (`IndexFlatL2` exact, `IndexIVFFlat` approximate) for
galleries beyond brute force. Both return numpy arrays with the same conventions:

- distances: (M, k) float32 squared Euclidean, ascending per row;
- indices: (M, k) int64 positions in the order vectors were added;
- when k exceeds the gallery size, the missing columns are padded with distance inf and index -1.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

__all__ = ["INDEXES", "BruteForceIndex", "FaissIndex", "GalleryIndex", "build_index"]

Array = np.ndarray | torch.Tensor


def _as_matrix(x: Array, what: str, dim: int | None) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be (N, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} has dimension {arr.shape[1]}, the index holds dimension {dim}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or inf values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _pad(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - dist.shape[1]
    if missing <= 0:
        return dist, idx
    m = dist.shape[0]
    dist = np.concatenate([dist, np.full((m, missing), np.inf, np.float32)], axis=1)
    idx = np.concatenate([idx, np.full((m, missing), -1, np.int64)], axis=1)
    return dist, idx


class GalleryIndex(abc.ABC):
    """A k-NN index over gallery vectors (squared Euclidean distance).

    Subclasses implement `add`, `_search` and `ntotal`; `search` validates and pads.
    """

    dim: int | None = None

    @abc.abstractmethod
    def add(self, x: Array) -> None:
        """Append gallery vectors.

        Args:
            x: (N, D) float vectors; their positions continue from `ntotal`.
        """

    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of gallery vectors held."""

    @abc.abstractmethod
    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k <= ntotal nearest neighbours of q (M, D) float32."""

    def __len__(self) -> int:
        return self.ntotal

    def search(self, q: Array, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest gallery vectors of each query.

        Args:
            q: (M, D) queries.
            k: neighbours per query (>= 1); when k > ntotal the rest is padded with (inf, -1).

        Returns:
            distances (M, k) float32 squared Euclidean ascending, indices (M, k) int64.

        Raises:
            ValueError: an empty index, k < 1, or a dimension mismatch.
        """
        if self.ntotal == 0:
            raise ValueError(f"{type(self).__name__} is empty: add gallery vectors before searching")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = _as_matrix(q, "queries", self.dim)
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        dist, idx = self._search(queries, min(k, self.ntotal))
        return _pad(dist.astype(np.float32), idx.astype(np.int64), k)


class BruteForceIndex(GalleryIndex):
    """Exact k-NN in torch, chunked over queries and gallery, on the device the model runs on.

    Distances use ||q||^2 + ||g||^2 - 2 q.g (one matmul per block, clamped at 0); each gallery chunk
    gives a top-k that is merged with the running top-k, so memory is O(chunk_size^2 + M k) whatever
    the gallery size. Ties go to the lower gallery index, on every device and for any chunking: each
    block's top-k is chosen by (distance, index) (`_block_topk`), not by `torch.topk`, whose choice
    among equal values is unspecified.

    Half precision (`dtype` float16 / bfloat16, for GPUs): with `rerank` > 0 the low-precision pass
    keeps a shortlist of max(k, rerank) neighbours per query, which are then re-ranked by exact
    float32 distances against a float32 copy of the gallery; the result is the float32 search's
    whenever its k nearest are in the shortlist (a gap between the k-th and the shortlist's last
    distance larger than the half-precision error). With `rerank` 0 the half-precision distances
    are returned as they are.

    Args:
        device: where the gallery lives and distances are computed; "auto" = the device of the first
            vectors added (a torch tensor's device; the CPU for numpy arrays).
        chunk_size: rows per query chunk and per gallery chunk.
        dtype: arithmetic dtype (float64 for tests that compare with numpy exactly; float16 or
            bfloat16 for speed on a GPU).
        rerank: half precision only: shortlist size re-ranked in float32; 0 = no re-ranking.
    """

    def __init__(
        self,
        device: str | torch.device = "auto",
        chunk_size: int = 4096,
        dtype: torch.dtype = torch.float32,
        rerank: int = 0,
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if rerank < 0:
            raise ValueError(f"rerank must be >= 0, got {rerank}")
        self.device: torch.device | None = None if str(device) == "auto" else torch.device(device)
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.rerank = rerank if dtype in (torch.float16, torch.bfloat16) else 0
        self._parts: list[torch.Tensor] = []
        self._exact_parts: list[torch.Tensor] = []  # float32 copies for re-ranking
        self._gallery: torch.Tensor | None = None
        self._exact: torch.Tensor | None = None
        self._g_sq: torch.Tensor | None = None

    @property
    def ntotal(self) -> int:
        return sum(p.shape[0] for p in self._parts)

    def _tensor(self, x: Array, what: str) -> torch.Tensor:
        """(N, D) float32 on the index's device (set by the first call when "auto"), checked."""
        t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        if t.ndim != 2:
            raise ValueError(f"{what} must be (N, D), got shape {tuple(t.shape)}")
        if self.dim is not None and t.shape[1] != self.dim:
            raise ValueError(f"{what} has dimension {t.shape[1]}, the index holds dimension {self.dim}")
        if self.device is None:
            self.device = t.device
        t = t.to(self.device, torch.float32)
        if not bool(torch.isfinite(t).all()):  # a host sync, once per call
            raise ValueError(f"{what} holds NaN or inf values")
        return t

    def add(self, x: Array) -> None:
        t = self._tensor(x, "gallery vectors")
        self.dim = t.shape[1]
        self._parts.append(t.to(self.dtype))
        if self.rerank:
            self._exact_parts.append(t)
        self._gallery = self._exact = self._g_sq = None  # concatenated lazily at the next search

    def search(self, q: Array, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ntotal == 0:
            raise ValueError(f"{type(self).__name__} is empty: add gallery vectors before searching")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = self._tensor(q, "queries")  # kept on the device: no round trip through numpy
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        dist, idx = self._search_tensor(queries, min(k, self.ntotal))
        return _pad(dist.astype(np.float32), idx.astype(np.int64), k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search_tensor(self._tensor(q, "queries"), k)

    def _prepare(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._gallery is None:
            self._gallery = torch.cat(self._parts) if len(self._parts) > 1 else self._parts[0]
            self._parts = [self._gallery]
            if self.rerank:
                self._exact = torch.cat(self._exact_parts) if len(self._exact_parts) > 1 else self._exact_parts[0]
                self._exact_parts = [self._exact]
            # Squared norms once per gallery, chunk by chunk: (gallery * gallery) would be a temporary
            # as large as the gallery itself (2 GB at 1M x 512 fp32).
            self._g_sq = torch.cat([torch.einsum("ij,ij->i", c, c) for c in self._gallery.split(self.chunk_size)])
        assert self._g_sq is not None
        return self._gallery, self._g_sq

    def _search_tensor(self, q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        gallery, g_sq = self._prepare()
        shortlist = min(max(k, self.rerank), self.ntotal) if self.rerank else k
        out_d, out_i = [], []
        with torch.no_grad():
            for qs in range(0, q.shape[0], self.chunk_size):
                qc = q[qs : qs + self.chunk_size]
                d, i = self._search_chunk(qc.to(self.dtype), gallery, g_sq, shortlist)
                if self.rerank:
                    d, i = self._rerank(qc, i, k)
                out_d.append(d.float().cpu().numpy())
                out_i.append(i.cpu().numpy())
        return np.concatenate(out_d), np.concatenate(out_i)

    def _search_chunk(
        self, qc: torch.Tensor, gallery: torch.Tensor, g_sq: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q_sq = (qc * qc).sum(dim=1, keepdim=True)
        best_d = torch.full((qc.shape[0], 0), float("inf"), dtype=qc.dtype, device=qc.device)
        best_i = torch.zeros((qc.shape[0], 0), dtype=torch.int64, device=qc.device)
        for gs in range(0, gallery.shape[0], self.chunk_size):
            gc = gallery[gs : gs + self.chunk_size]
            d = (q_sq + g_sq[None, gs : gs + gc.shape[0]] - 2.0 * qc @ gc.T).clamp_(min=0)
            d, i = _block_topk(d, min(k, gc.shape[0]))
            # Merge with the running top-k: earlier chunks hold lower indices, so a stable sort of
            # two (distance, index)-ordered lists keeps that order at ties.
            cand_d, cand_i = torch.cat([best_d, d], dim=1), torch.cat([best_i, i + gs], dim=1)
            order = torch.sort(cand_d, dim=1, stable=True).indices[:, :k]
            best_d, best_i = cand_d.gather(1, order), cand_i.gather(1, order)
        return best_d, best_i

    def _rerank(self, qc: torch.Tensor, shortlist: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest of each query's shortlist (c, S) by float32 distances, ties to the lower index."""
        assert self._exact is not None
        # Sorted by index first, so that the stable sort by distance below breaks ties by index.
        shortlist = torch.sort(shortlist, dim=1).values
        step = max(1, _RERANK_ELEMENTS // (shortlist.shape[1] * qc.shape[1]))  # bounds the (rows, S, D) gather
        parts = []
        for rs in range(0, qc.shape[0], step):
            q, cand = qc[rs : rs + step], self._exact[shortlist[rs : rs + step]]  # (r, D), (r, S, D)
            d = (q * q).sum(1, keepdim=True) + (cand * cand).sum(2) - 2.0 * torch.einsum("rd,rsd->rs", q, cand)
            parts.append(d.clamp_(min=0))
        d = torch.cat(parts)
        order = torch.sort(d, dim=1, stable=True).indices[:, :k]
        return d.gather(1, order), shortlist.gather(1, order)


_RERANK_ELEMENTS = 2**24  # float32 values of gathered gallery rows held at once while re-ranking (64 MB)


def _block_topk(d: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of `d` (c, n) by (value, column), ascending: (values, columns).

    `torch.topk` picks among equal values in an unspecified way (it differs between devices). Its
    k + 1 smallest tell where that matters: only a row whose (k+1)-th value equals its k-th has a tie
    across the cut, and only such rows are redone by column order (`_ties_by_column`); the rest are
    put in (value, column) order by two sorts of k entries.
    """
    n = d.shape[1]
    if k >= n:
        cols = torch.arange(n, device=d.device).expand(d.shape[0], n)
        order = torch.sort(d, dim=1, stable=True).indices
        return d.gather(1, order), cols.gather(1, order)
    vals, cols = torch.topk(d, k + 1, dim=1, largest=False, sorted=True)
    cut = (vals[:, k] == vals[:, k - 1]).nonzero()[:, 0]
    vals, cols = vals[:, :k], cols[:, :k]
    if len(cut):
        vals[cut], cols[cut] = _ties_by_column(d[cut], vals[cut, k - 1 :], k)
    by_col = torch.sort(cols, dim=1).indices  # column order, then a stable sort by value
    vals, cols = vals.gather(1, by_col), cols.gather(1, by_col)
    order = torch.sort(vals, dim=1, stable=True).indices
    return vals.gather(1, order), cols.gather(1, order)


def _ties_by_column(d: torch.Tensor, kth: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows of `d` whose k-th smallest value `kth` (c, 1) is tied across the cut: the entries below
    it and, of those equal to it, the lowest columns, k per row (unordered)."""
    below = d < kth
    tied = d == kth
    free = k - below.sum(dim=1, keepdim=True)  # slots left for the tied entries
    keep = below | (tied & (tied.cumsum(dim=1) <= free))
    cols = keep.nonzero()[:, 1].view(d.shape[0], k)
    return d.gather(1, cols), cols


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # an optional extra, so only its users need it
        raise ImportError(
            "FaissIndex needs faiss; install it with: pip install 'imagesearch[faiss]' (faiss-cpu)"
        ) from exc
    return faiss


class FaissIndex(GalleryIndex):
    """k-NN on FAISS: `kind="flat"` (IndexFlatL2, exact) or `kind="ivf"` (IndexIVFFlat, approximate).

    The IVF index is trained on the first `add` (k-means into `nlist` cells), which therefore needs
    at least `nlist` vectors; later adds are assigned to the trained cells. A search visits `nprobe`
    cells: more cells, higher recall, slower.

    Args:
        kind: "flat" or "ivf".
        nlist: IVF cells (ignored by "flat").
        nprobe: cells visited per query (ignored by "flat").
        train_per_list: IVF k-means trains on at most nlist x this many vectors, drawn at random from
            the first add (FAISS's own default of 256 per list makes training at 1M take minutes).
        seed: for that draw.
    """

    def __init__(self, kind: str = "flat", nlist: int = 100, nprobe: int = 8, train_per_list: int = 64, seed: int = 0):
        if kind not in ("flat", "ivf"):
            raise ValueError(f"FaissIndex kind must be 'flat' or 'ivf', got {kind!r}")
        self.faiss = _import_faiss()
        self.kind, self.nlist, self.nprobe = kind, nlist, nprobe
        self.train_per_list, self.seed = train_per_list, seed
        self._index: Any = None

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, x: Array) -> None:
        arr = _as_matrix(x, "gallery vectors", self.dim)
        if self._index is None:
            self.dim = arr.shape[1]
            if self.kind == "flat":
                self._index = self.faiss.IndexFlatL2(self.dim)
            else:
                if arr.shape[0] < self.nlist:
                    raise ValueError(
                        f"FaissIndex(kind='ivf') trains on the first add: got {arr.shape[0]} vectors, "
                        f"need at least nlist={self.nlist} (lower nlist or use kind='flat')"
                    )
                quantizer = self.faiss.IndexFlatL2(self.dim)
                index = self.faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, self.faiss.METRIC_L2)
                n_train = min(arr.shape[0], self.nlist * self.train_per_list)
                rows = np.random.default_rng(self.seed).choice(arr.shape[0], n_train, replace=False)
                index.train(arr[np.sort(rows)] if n_train < arr.shape[0] else arr)
                index.nprobe = self.nprobe
                self._index = index
        self._index.add(arr)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self._index.search(q, k)
        # IVF can find fewer than k vectors in the probed cells; FAISS marks them -1 with a huge
        # distance, which we report as inf like the padding.
        dist = np.where(idx < 0, np.inf, dist)
        return dist, idx


INDEXES: dict[str, Callable[..., GalleryIndex]] = {
    "brute": BruteForceIndex,
    "faiss_flat": partial(FaissIndex, kind="flat"),
    "faiss_ivf": partial(FaissIndex, kind="ivf"),
}


def build_index(name: str, **kwargs: Any) -> GalleryIndex:
    """An empty gallery index by name.

    Args:
        name: "brute", "faiss_flat" or "faiss_ivf".
        **kwargs: constructor arguments (`device`, `chunk_size`, `dtype` for brute; `nlist`,
            `nprobe` for faiss_ivf).

    Returns:
        The index; fill it with `add`.
    """
    if name not in INDEXES:
        raise ValueError(f"unknown index {name!r}; choose one of {sorted(INDEXES)}")
    return INDEXES[name](**kwargs)
