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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from imagesearch.metrics.detection import _as_numpy


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
