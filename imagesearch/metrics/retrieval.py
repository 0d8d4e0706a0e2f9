"""Retrieval metrics: per-video top-k item accuracy, per-crop recall@k, mean average precision.

Pure functions on numpy arrays (torch tensors are accepted and moved to CPU). Conventions:
- `scores` is a (Q, G) matrix of distances (smaller is closer, the default) or of similarities
  (`similarity=True`).
- Ties in `scores` are broken by gallery index, lower first (a stable argsort), so a tie never
  depends on the sort algorithm; recall@k is therefore optimistic for a query tied with a positive
  that sits early in the gallery. `mean_average_precision` uses scikit-learn, which instead scores
  tied gallery items as one block.
- A query whose label is absent from the gallery counts as a miss (recall 0, AP 0) rather than being
  dropped: in this project a missing gallery item is a real failure of the evaluation set-up that
  must show up in the figure, not vanish from it.

`rank_gallery`, `recall_at_k` and `mean_average_precision` take a dense (Q, G) matrix: fine for small
sets and tests. `embedding_retrieval_metrics` gives the same recall@k and mAP from the embeddings in
memory O(chunk x G), whatever Q (~41 bytes per query-gallery pair for the dense path: 0.8 TB at
Q = 100k, G = 200k).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import average_precision_score

from imagesearch.metrics.detection import _as_numpy

if TYPE_CHECKING:
    import torch

CHUNK_BYTES = 2**30  # working memory of one query chunk of `embedding_retrieval_metrics`


def topk_item_accuracy(
    ranked: Mapping[str, Sequence[str]],
    truth: Mapping[str, str | Collection[str]],
    ks: Sequence[int] = (1, 5, 20),
) -> dict[str, float]:
    """Fraction of videos whose true item is among the first k ranked items (the "Top 20" evaluation).

    The denominator is every video in `truth`; a video missing from `ranked` (abstained) is a miss.
    Videos in `ranked` but not in `truth` are ignored.

    Args:
        ranked: video_id -> item ids, best first.
        truth: video_id -> the true item id (or a collection of acceptable ids).
        ks: cut-offs.

    Returns:
        {"top{k}": accuracy} for each k; 0.0 for every k when `truth` is empty.

    Example:
        >>> topk_item_accuracy({"v1": ["a", "b"], "v2": ["c", "a"]}, {"v1": "a", "v2": "a", "v3": "b"}, ks=(1, 2))
        {'top1': 0.3333333333333333, 'top2': 0.6666666666666666}
    """
    hits = dict.fromkeys(ks, 0)
    for video_id, true in truth.items():
        accepted = {true} if isinstance(true, str) else set(true)
        items = list(ranked.get(video_id, ()))
        for k in ks:
            hits[k] += bool(accepted.intersection(items[:k]))
    n = len(truth)
    return {f"top{k}": hits[k] / n if n else 0.0 for k in ks}


def rank_gallery(scores: Any, similarity: bool = False) -> np.ndarray:
    """Gallery indices sorted from best to worst match for each query.

    Args:
        scores: (Q, G) distances, or similarities when `similarity` is True.
        similarity: larger is better.

    Returns:
        (Q, G) int64 indices; ties keep gallery order (lower index first).

    Example:
        >>> rank_gallery([[0.5, 0.1, 0.5]]).tolist()
        [[1, 0, 2]]
    """
    s = _as_numpy(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a (Q, G) matrix, got shape {s.shape}")
    return np.argsort(-s if similarity else s, axis=1, kind="stable")


def recall_at_k(
    scores: Any,
    query_labels: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 5, 20),
    similarity: bool = False,
) -> dict[str, float]:
    """Per-query recall@k: the fraction of queries with a same-label gallery entry in their top k.

    A k larger than the gallery is clipped to its size.

    Args:
        scores: (Q, G) distances (or similarities with `similarity=True`), or, when an integer array,
            (Q, K) gallery indices already ranked best first (e.g. from a FAISS search).
        query_labels: (Q,) labels of the queries (e.g. item ids of frame crops).
        gallery_labels: (G,) labels of the gallery (e.g. item ids of product-image crops).
        ks: cut-offs.
        similarity: larger scores are better (ignored for ranked indices).

    Returns:
        {"recall@{k}": value} for each k.

    Example:
        >>> recall_at_k([[0.1, 0.9], [0.2, 0.3]], ["a", "b"], ["a", "b"], ks=(1, 2))
        {'recall@1': 0.5, 'recall@2': 1.0}
    """
    ranked = _ranked_indices(scores, similarity)
    q = np.asarray(query_labels)
    g = np.asarray(gallery_labels)
    if ranked.shape[0] != len(q):
        raise ValueError(f"{ranked.shape[0]} score rows but {len(q)} query labels")
    if len(q) == 0:
        raise ValueError("recall_at_k needs at least one query")
    relevant = g[ranked] == q[:, None]  # (Q, K)
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1), np.iinfo(np.int64).max)
    return {f"recall@{k}": float(np.mean(first_hit < k)) for k in ks}


def _ranked_indices(scores: Any, similarity: bool) -> np.ndarray:
    raw = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    if np.issubdtype(raw.dtype, np.integer):
        if raw.ndim != 2:
            raise ValueError(f"ranked indices must be (Q, K), got shape {raw.shape}")
        return raw.astype(np.int64)
    return rank_gallery(raw, similarity)


def mean_average_precision(
    scores: Any,
    query_labels: Any,
    gallery_labels: Any,
    similarity: bool = False,
) -> float:
    """Mean over queries of the average precision of the full gallery ranking.

    Per query: `sklearn.metrics.average_precision_score` with same-label gallery entries as
    positives and the (negated, for distances) scores as confidence. A query with no positive in the
    gallery has AP 0.

    Args:
        scores: (Q, G) distances, or similarities when `similarity` is True.
        query_labels: (Q,) labels.
        gallery_labels: (G,) labels.
        similarity: larger scores are better.

    Returns:
        mAP in [0, 1].

    Example:
        >>> # query "a": positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2
        >>> round(mean_average_precision([[0.1, 0.2, 0.3]], ["a"], ["a", "b", "a"]), 4)
        0.8333
    """
    s = _as_numpy(scores)
    q = np.asarray(query_labels)
    g = np.asarray(gallery_labels)
    if s.ndim != 2 or s.shape != (len(q), len(g)):
        raise ValueError(f"scores shape {s.shape} does not match {len(q)} queries x {len(g)} gallery entries")
    if len(q) == 0:
        raise ValueError("mean_average_precision needs at least one query")
    confidence = s if similarity else -s
    aps = []
    for i in range(len(q)):
        positives = g == q[i]
        aps.append(float(average_precision_score(positives, confidence[i])) if positives.any() else 0.0)
    return float(np.mean(aps))


def embedding_retrieval_metrics(
    queries: Any,
    query_labels: Any,
    gallery: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 5, 20),
    chunk_size: int = 0,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """recall@k and mAP of queries against a gallery by Euclidean distance, in bounded memory.

    The same figures as `recall_at_k` and `mean_average_precision` on the dense distance matrix
    (`torch.cdist` in float64: today's validation), from one chunk of queries at a time, without
    ranking the gallery. Per query, with its positives' distances t_1 <= ... <= t_P and N(t) the
    number of gallery entries at distance <= t (counted for all P thresholds in one pass by
    `torch.searchsorted` and a bincount):
    - recall@k: the rank of the first positive in the stable order (distance, then gallery index) is
      N(t_1) - #{d == t_1} + #{d == t_1 and index < i*}, i* the lowest-index positive at t_1;
    - AP over the full ranking, tied entries scored as one block as scikit-learn's
      `average_precision_score` does: AP = (1/P) sum_j TP(t_j) / N(t_j), TP(t) the positives at
      distance <= t. No truncation (this is not mAP@k).
    A query without a positive in the gallery scores recall 0 and AP 0. Memory: the inputs, one
    (chunk, G) distance block plus an int32 block of the same shape (~13 bytes per pair in float64),
    and gallery rows converted to `dtype` 8192 at a time (never a whole float64 copy of the gallery).
    torch is imported here only, so that importing this module (the scorer does) stays light.

    Args:
        queries: (Q, D) embeddings (numpy or torch, any device).
        query_labels: (Q,) labels.
        gallery: (G, D) embeddings.
        gallery_labels: (G,) labels.
        ks: recall cut-offs; a k above G counts every query that has a positive.
        chunk_size: queries per chunk; 0 = as many as fit in `CHUNK_BYTES` of working memory.
        dtype: arithmetic dtype; None = float64, as the dense path (float32 is faster and halves the
            memory, but may order near-ties differently).
        device: where to compute; None = the queries' device (CPU for numpy input).

    Returns:
        {"recall@{k}": value for each k, "map": mAP}.

    Example:
        >>> # query "a" at 1: gallery b at 0 (nearest), a at 3 (2nd), a at 4 (3rd) -> AP = (1/2 + 2/3) / 2
        >>> m = embedding_retrieval_metrics([[1.0]], ["a"], [[0.0], [3.0], [4.0]], ["b", "a", "a"], ks=(1, 2))
        >>> m["recall@1"], m["recall@2"], round(m["map"], 4)
        (0.0, 1.0, 0.5833)
    """
    import torch

    q_emb, g_emb = _as_tensor(queries, "queries"), _as_tensor(gallery, "gallery")
    if q_emb.shape[1] != g_emb.shape[1]:
        raise ValueError(f"queries have dimension {q_emb.shape[1]}, the gallery {g_emb.shape[1]}")
    q_codes, g_codes = _label_codes(query_labels, gallery_labels, len(q_emb), len(g_emb))
    dev = torch.device(device) if device is not None else q_emb.device
    dt = dtype or torch.float64
    g_emb = g_emb.to(dev)  # kept in its own dtype: converted block by block in `_distances`
    g_sq = torch.cat([(b.to(dt) ** 2).sum(1) for b in g_emb.split(_GALLERY_BLOCK)])
    positives = _PositiveTable(g_codes, dev)
    step = chunk_size if chunk_size > 0 else max(1, CHUNK_BYTES // (16 * len(g_emb)))
    first_hit, ap = [], []
    for start in range(0, len(q_emb), step):
        dist = _distances(q_emb[start : start + step].to(dev, dt), g_emb, g_sq)
        rank, chunk_ap = _first_hit_and_ap(dist, *positives.of(q_codes[start : start + step]))
        first_hit.append(rank.cpu())
        ap.append(chunk_ap.cpu())
    ranks, aps = torch.cat(first_hit), torch.cat(ap)
    out = {f"recall@{k}": float((ranks < k).double().mean()) for k in ks}
    out["map"] = float(aps.mean())
    return out


_GALLERY_BLOCK = 8192  # gallery rows converted to the arithmetic dtype at a time
_NO_HIT = np.iinfo(np.int64).max  # the rank of a query without positive: above every k


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    if t.ndim != 2 or len(t) == 0:
        raise ValueError(f"{what} must be a non-empty (N, D) matrix, got shape {tuple(t.shape)}")
    return t


def _label_codes(query_labels: Any, gallery_labels: Any, nq: int, ng: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the labels (equal labels, equal codes), so that chunks compare no strings."""
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    if q.shape != (nq,) or g.shape != (ng,):
        raise ValueError(f"labels {q.shape} / {g.shape} do not match {nq} queries / {ng} gallery entries")
    _, codes = np.unique(np.concatenate([q, g]), return_inverse=True)
    return codes[:nq].astype(np.int64), codes[nq:].astype(np.int64)


class _PositiveTable:
    """The gallery positions of each label code (CSR), so a chunk gathers its few positives instead of
    comparing labels over the whole (chunk, G) block."""

    def __init__(self, g_codes: np.ndarray, device: torch.device) -> None:
        import torch

        self.order = torch.from_numpy(np.argsort(g_codes, kind="stable")).to(device)  # ascending index per code
        size = np.bincount(g_codes)
        self.start = np.concatenate([[0], np.cumsum(size)[:-1]])
        self.size = size
        self.device = device

    def of(self, codes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, P) gallery positions of each query's positives (ascending, padded with 0) and their count (c,)."""
        import torch

        known = codes < len(self.size)  # a label absent from the gallery has a code beyond its codes
        n = np.where(known, self.size[np.minimum(codes, len(self.size) - 1)], 0)
        p = int(n.max(initial=0))
        offsets = self.start[np.minimum(codes, len(self.size) - 1)][:, None] + np.arange(p)[None, :]
        offsets = np.where(np.arange(p)[None, :] < n[:, None], offsets, 0)
        cols = self.order[torch.from_numpy(offsets).to(self.device)]
        return cols, torch.from_numpy(n).to(self.device)


def _distances(qc: torch.Tensor, gallery: torch.Tensor, g_sq: torch.Tensor) -> torch.Tensor:
    """(c, G) Euclidean distances, sqrt(max(0, |q|^2 + |g|^2 - 2 q.g)) as `torch.cdist` computes them."""
    import torch

    dist = torch.empty((len(qc), len(gallery)), dtype=qc.dtype, device=qc.device)
    for gs in range(0, len(gallery), _GALLERY_BLOCK):
        block = gallery[gs : gs + _GALLERY_BLOCK].to(qc.dtype)
        torch.addmm(g_sq[None, gs : gs + len(block)], qc, block.T, alpha=-2.0, out=dist[:, gs : gs + len(block)])
    return dist.add_((qc * qc).sum(1, keepdim=True)).clamp_(min=0).sqrt_()


def _first_hit_and_ap(dist: torch.Tensor, cols: torch.Tensor, n_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `dist` (c, G): the 0-based rank of its first positive (`_NO_HIT` when none) and its AP.

    `cols` (c, P) are the positives' gallery positions, ascending, valid where the column < `n_pos`.
    """
    import torch

    rows, p = cols.shape
    no_hit = torch.full((rows,), _NO_HIT, dtype=torch.int64)
    if p == 0:
        return no_hit, torch.zeros(rows, dtype=torch.float64)
    valid = torch.arange(p, device=dist.device)[None, :] < n_pos[:, None]
    d_pos = torch.where(valid, dist.gather(1, cols), torch.inf)
    thresholds, order = d_pos.sort(dim=1, stable=True)  # stable: at a tie the lower gallery index first
    first_col = cols.gather(1, order[:, :1])  # i*: the nearest positive, lowest index among ties
    bucket = torch.searchsorted(thresholds, dist, out_int32=True)  # thresholds strictly below each distance
    bucket += torch.arange(rows, dtype=torch.int32, device=dist.device)[:, None] * (p + 1)
    within = torch.bincount(bucket.view(-1), minlength=rows * (p + 1)).view(rows, p + 1).cumsum(1)[:, :p]
    del bucket
    tp = torch.searchsorted(thresholds, thresholds, right=True)  # positives at distance <= t_j
    precision = torch.where(valid, tp.double() / within.clamp(min=1).double(), 0.0)
    ap = precision.sum(1) / n_pos.clamp(min=1).double()
    # Entries tied with the first positive, and those of them before i* in gallery order.
    tie_row, tie_col = (dist == thresholds[:, :1]).nonzero(as_tuple=True)
    ties = torch.bincount(tie_row, minlength=rows)
    ahead = torch.bincount(tie_row[tie_col < first_col[tie_row, 0]], minlength=rows)
    rank = within[:, 0] - ties + ahead
    return torch.where(n_pos > 0, rank, no_hit.to(dist.device)), ap
