"""Weighted fusion of per-part features (global embedding, LBP, ...) and the choice of its weight.

SPEC §6: LBP alone is a weak cue and an equal-weight concatenation hurt retrieval on real data, so
the LBP weight is chosen on validation data and weight 0 (the global feature alone) is always among
the candidates, with ties going to the smaller weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from imagesearch.matching.index import BruteForceIndex

__all__ = ["choose_fusion_weight", "fuse"]

Array = np.ndarray | torch.Tensor


def _check_weights(parts: Mapping[str, Array], weights: Mapping[str, float]) -> None:
    missing, extra = set(parts) - set(weights), set(weights) - set(parts)
    if missing or extra:
        raise ValueError(f"fusion weights must name every part: missing {sorted(missing)}, unknown {sorted(extra)}")
    bad = {k: w for k, w in weights.items() if not (w >= 0 and np.isfinite(w))}
    if bad:
        raise ValueError(f"fusion weights must be finite and >= 0, got {bad}")
    if sum(weights.values()) <= 0:
        raise ValueError("fusion weights are all 0: nothing left to fuse")
    rows = {k: int(v.shape[0]) for k, v in parts.items()}
    if len(set(rows.values())) != 1 or any(v.ndim != 2 for v in parts.values()):
        raise ValueError(f"fusion parts must be (N, D_i) with the same N, got {rows}")


def fuse(parts: Mapping[str, Array], weights: Mapping[str, float]) -> Array:
    """Concatenate L2-normalised parts scaled by sqrt(weight / total weight).

    Each part is L2-normalised per row, multiplied by sqrt(w_i / W) with W = sum of the weights, and
    the parts are concatenated in the order of `parts`. Parts with weight 0 are left out. Because
    every part is a unit vector, the result is a unit vector too (renormalisation is the constant
    1/sqrt(W), not a per-row norm), and for any two rows a, b:

        ||fuse(a) - fuse(b)||^2 = sum_i (w_i / W) * ||a_i/|a_i| - b_i/|b_i|| ||^2

    i.e. the fused squared Euclidean distance is the weighted mean of the per-part squared
    distances of the normalised parts. (A row that is all zeros in a part stays zero there, so that
    row's fused norm is below 1; the identity still holds.)

    Args:
        parts: name -> (N, D_i) features, numpy or torch (all numpy gives numpy float32; otherwise
            a torch float32 tensor on the first tensor's device).
        weights: name -> weight >= 0, one per part, not all 0.

    Returns:
        (N, sum of D_i over parts with weight > 0) fused features.

    >>> parts = {"g": np.array([[3.0, 4.0]]), "l": np.array([[0.0, 2.0]])}
    >>> print(fuse(parts, {"g": 1.0, "l": 1.0}).round(4))  # [0.6, 0.8, 0, 1] / sqrt(2)
    [[0.4243 0.5657 0.     0.7071]]
    >>> print(fuse(parts, {"g": 1.0, "l": 0.0}).round(4))  # weight 0 drops "l"
    [[0.6 0.8]]
    """
    _check_weights(parts, weights)
    total = float(sum(weights.values()))
    as_numpy = all(isinstance(v, np.ndarray) for v in parts.values())
    device = next((v.device for v in parts.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    scaled = []
    for name, value in parts.items():
        if weights[name] == 0:
            continue
        x = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        x = F.normalize(x.to(device, torch.float32), dim=1)
        scaled.append(x * float(np.sqrt(weights[name] / total)))
    fused = torch.cat(scaled, dim=1)
    return fused.cpu().numpy() if as_numpy else fused


def _top1(
    query: Array, gallery: Array, q_labels: np.ndarray, g_labels: np.ndarray, device: str | torch.device
) -> float:
    # float32, like the matcher's search: the weight is chosen under the arithmetic it will be used with.
    index = BruteForceIndex(device=device)
    index.add(gallery)
    _, nearest = index.search(query, 1)
    return float((g_labels[nearest[:, 0]] == q_labels).mean())


def choose_fusion_weight(
    query_parts: Mapping[str, Array],
    gallery_parts: Mapping[str, Array],
    query_labels: Sequence[object] | np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    candidates: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    global_key: str = "global",
    local_key: str = "lbp",
    device: str | torch.device = "auto",
) -> tuple[float, list[dict[str, float]]]:
    """Pick the local-feature (LBP) weight that maximises validation top-1, global weight fixed at 1.

    For each candidate w the query and gallery parts are fused with {global: 1, lbp: w} and each
    query's nearest gallery row (exact squared Euclidean) is right when it has the query's label.
    Weight 0 is always tried, and ties go to the smaller weight, so on this validation data the
    chosen fusion is never worse than the global feature alone.

    Args:
        query_parts: {global_key: (M, D_g), local_key: (M, D_l)} query features.
        gallery_parts: the same keys, (N, D_g) and (N, D_l).
        query_labels: (M,) labels (e.g. item ids) of the queries.
        gallery_labels: (N,) labels of the gallery rows.
        candidates: weights to try (0 is added when absent).
        global_key: name of the global part.
        local_key: name of the local part whose weight is chosen.
        device: where the exact nearest-neighbour search runs (`BruteForceIndex`, float32); "auto" =
            the device of the parts (torch tensors), the CPU for numpy parts.

    Returns:
        (best weight, table): the table has one {"weight", "top1"} dict per candidate, ascending.
    """
    keys = (global_key, local_key)
    for what, parts in (("query_parts", query_parts), ("gallery_parts", gallery_parts)):
        if set(parts) != set(keys):
            raise ValueError(f"{what} must hold exactly the keys {list(keys)}, got {sorted(parts)}")
    q_labels, g_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(q_labels) != len(query_parts[global_key]) or len(g_labels) != len(gallery_parts[global_key]):
        raise ValueError("query_labels / gallery_labels must have one label per row of the parts")
    table = []
    for w in sorted({0.0, *map(float, candidates)}):
        weights = {global_key: 1.0, local_key: w}
        top1 = _top1(fuse(query_parts, weights), fuse(gallery_parts, weights), q_labels, g_labels, device)
        table.append({"weight": w, "top1": top1})
    # Ascending weights and a strict ">" keep the smallest weight among equals.
    best = table[0]
    for row in table[1:]:
        if row["top1"] > best["top1"]:
            best = row
    return best["weight"], table
