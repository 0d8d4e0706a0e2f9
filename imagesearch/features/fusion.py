"""Weighted fusion of per-part features (global embedding, LBP, ...).

The weights are chosen on validation data (`evaluation.fusion.choose_fusion_weight`, SPEC §6), never
on the data reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fuse"]

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
