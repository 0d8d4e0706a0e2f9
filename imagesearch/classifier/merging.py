"""Category merging (SPEC §3 stage 4): join the categories the classifier confuses most.

Classification only serves retrieval (a crop is searched among the products of its predicted
category), so two categories the classifier cannot tell apart are better searched together. From
the validation confusion matrix, `greedy_merge` repeatedly joins the pair of groups with the largest
symmetric confusion rate (union-find over categories), until the merged accuracy reaches a target,
the largest remaining rate falls below a threshold, or a maximum number of merges is done.

The result is a merge map `{category_name: group_name}` (every category, singletons map to
themselves), written as JSON next to the classifier checkpoint and read back by the matcher with
`load_merge_map`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagesearch.data.labels import CATEGORY_INDEX
from imagesearch.io import atomic_write_text

GROUP_SEP = "+"


@dataclass
class MergeConfig:
    """When greedy merging stops (whichever comes first).

    Attributes:
        target_accuracy: stop once the merged validation accuracy reaches this.
        min_confusion: stop when the largest symmetric confusion rate is below this.
        max_merges: at most this many merges (0 disables merging).
    """

    target_accuracy: float = 0.9
    min_confusion: float = 0.05
    max_merges: int = 10


@dataclass
class MergeResult:
    """Groups of category indices (each sorted, groups ordered by their first member) and the steps taken."""

    groups: list[list[int]]
    steps: list[dict[str, Any]] = field(default_factory=list)
    accuracy_before: float = 0.0
    accuracy_after: float = 0.0
    stop_reason: str = ""


class _UnionFind:
    """Disjoint sets over 0..n-1; the root of a set is always its smallest member (stable group order)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = sorted((self.find(i), self.find(j)))
        self.parent[b] = a

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return [out[r] for r in sorted(out)]


def group_confusion(confusion: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Sum a (K, K) confusion matrix (rows true, columns predicted) into (G, G) over groups of classes."""
    member = np.zeros((len(groups), confusion.shape[0]))
    for g, members in enumerate(groups):
        member[g, list(members)] = 1.0
    return member @ confusion @ member.T


def confusion_rates(confusion: np.ndarray) -> np.ndarray:
    """Symmetric confusion rate between every two classes (or groups) of a confusion matrix.

    rate[a, b] = (C[a, b] / n_a + C[b, a] / n_b) / 2, n_a = samples of true class a (row sum); a term
    whose class has no samples counts 0. Each direction is normalised by its own class size so that a
    small class always taken for a large one still shows a high rate. The diagonal is 0.

    Args:
        confusion: (K, K) counts, rows true class, columns predicted class.

    Returns:
        (K, K) symmetric float64 matrix of rates in [0, 1].

    Example:
        >>> confusion_rates(np.array([[6, 2], [1, 3]])).tolist()  # (2/8 + 1/4) / 2
        [[0.0, 0.25], [0.25, 0.0]]
    """
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum(axis=1, keepdims=True)
    row = np.divide(c, n, out=np.zeros_like(c), where=n > 0)
    rates = (row + row.T) / 2.0
    np.fill_diagonal(rates, 0.0)
    return rates


def _accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total > 0 else 0.0


def greedy_merge(confusion: np.ndarray, cfg: MergeConfig, names: Sequence[str] | None = None) -> MergeResult:
    """Merge the most confused pairs of groups, one at a time (SPEC §3 stage 4).

    Each step checks, in order: `max_merges` reached, merged accuracy >= `target_accuracy`, largest
    rate (see `confusion_rates`, over the current groups) < `min_confusion`; if none holds, the pair
    with the largest rate is merged (ties: the pair whose first members come first).

    Args:
        confusion: (K, K) validation counts, rows true, columns predicted.
        cfg: stopping rules.
        names: K class names, only to label the steps.

    Returns:
        A `MergeResult` with the groups, each step (pair, rate, accuracy after) and the stop reason.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"greedy_merge: confusion must be square (K, K), got shape {c.shape}")
    names = list(names) if names is not None else [str(i) for i in range(c.shape[0])]
    uf = _UnionFind(c.shape[0])
    result = MergeResult(groups=uf.groups(), accuracy_before=_accuracy(c))
    while True:
        groups = uf.groups()
        merged = group_confusion(c, groups)
        acc = _accuracy(merged)
        result.groups, result.accuracy_after = groups, acc
        if len(result.steps) >= cfg.max_merges:
            result.stop_reason = f"max_merges ({cfg.max_merges}) reached"
            break
        if acc >= cfg.target_accuracy:
            result.stop_reason = f"accuracy {acc:.4f} >= target {cfg.target_accuracy}"
            break
        rates = confusion_rates(merged)
        a, b = np.unravel_index(int(np.argmax(np.triu(rates, k=1))), rates.shape) if len(groups) > 1 else (0, 0)
        # A zero rate never merges, even with min_confusion 0: it would join unrelated classes.
        if len(groups) < 2 or rates[a, b] < cfg.min_confusion or rates[a, b] <= 0:
            best = rates[a, b] if len(groups) > 1 else 0.0
            result.stop_reason = f"largest confusion {best:.4f} < min_confusion {cfg.min_confusion}"
            break
        uf.union(groups[a][0], groups[b][0])
        after = _accuracy(group_confusion(c, uf.groups()))
        result.steps.append(
            {
                "merged": [group_name(groups[a], names), group_name(groups[b], names)],
                "rate": float(rates[a, b]),
                "accuracy_after": after,
            }
        )
    return result


def group_name(members: Sequence[int], names: Sequence[str]) -> str:
    """A group's name: its members' names in class order, joined by "+" ("短裙+中等半身裙")."""
    return GROUP_SEP.join(names[i] for i in sorted(members))


def merge_map_from_groups(groups: Sequence[Sequence[int]], names: Sequence[str]) -> dict[str, str]:
    """`{class_name: group_name}` for every class (a singleton maps to itself), in class order."""
    out = {names[i]: group_name(members, names) for members in groups for i in members}
    return {n: out[n] for n in names}


def groups_from_merge_map(merge_map: Mapping[str, str], names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The group names (in order of first member) and the (K,) group index of each class.

    A class absent from the map is its own group.
    """
    group_names: list[str] = []
    index = np.zeros(len(names), dtype=np.int64)
    for k, name in enumerate(names):
        g = merge_map.get(name, name)
        if g not in group_names:
            group_names.append(g)
        index[k] = group_names.index(g)
    return group_names, index


def merge_scores(scores: np.ndarray, class_to_group: np.ndarray, num_groups: int) -> np.ndarray:
    """Sum per-class probabilities into per-group ones.

    Args:
        scores: (N, K) class probabilities (softmax of the logits).
        class_to_group: (K,) group index of each class.
        num_groups: G.

    Returns:
        (N, G) group probabilities.

    Example:
        >>> merge_scores(np.array([[0.5, 0.3, 0.2]]), np.array([0, 0, 1]), 2).tolist()
        [[0.8, 0.2]]
    """
    member = np.zeros((scores.shape[1], num_groups))
    member[np.arange(scores.shape[1]), class_to_group] = 1.0
    return np.asarray(scores, dtype=np.float64) @ member


def save_merge_map(path: str | Path, merge_map: Mapping[str, str]) -> Path:
    """Write a merge map as a JSON object, atomically."""
    return atomic_write_text(path, json.dumps(dict(merge_map), ensure_ascii=False, indent=2) + "\n")


def load_merge_map(path: str | Path) -> dict[str, str]:
    """Read a merge map `{category_name: group_name}` written by `save_merge_map`.

    Raises:
        ValueError: not a JSON object of strings, or a key that is not a category; names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: merge map is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: a merge map must be a JSON object of category name -> group name strings")
    unknown = sorted(k for k in data if k not in CATEGORY_INDEX)
    if unknown:
        raise ValueError(f"{path}: unknown categories in merge map: {unknown}")
    return data
