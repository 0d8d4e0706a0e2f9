"""Class-balanced sampling over garment categories (SPEC §3 stage 1).

The original drew ~10k video frames and ~10k product images so that every category is about
equally represented. `ClassBalancedSampler` does that for any dataset whose samples carry category
labels: one label per sample (a garment crop) or several (a frame holding several garments), with
optional groups ("frame", "image") drawn in a fixed ratio. Stages other than the detector import it
too (the classifier balances its crops the same way).

torch's `WeightedRandomSampler` draws from one weight vector; the group ratio and the per-epoch
seeding (a resume replays the same draws) are what this adds, so it is written here on numpy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

NO_LABEL = -1  # the pseudo-category of a sample without labels (a frame with no garment)


def _label_sets(labels: Sequence[int | Sequence[int]]) -> list[frozenset[int]]:
    sets = []
    for value in labels:
        items = [int(value)] if isinstance(value, (int, np.integer)) else [int(v) for v in value]
        sets.append(frozenset(items) if items else frozenset([NO_LABEL]))
    return sets


def balanced_weights(labels: Sequence[int | Sequence[int]]) -> np.ndarray:
    """Sampling probabilities that make every category equally likely to be drawn.

    Drawing from them equals: pick a category uniformly, then a sample holding it uniformly. So
    sample i gets `P(i) = (1/C) * sum over its categories c of 1/n_c`, where n_c counts the samples
    holding c and C the categories present. A sample without labels counts as category `NO_LABEL`.

    Args:
        labels: per sample, one category index or a sequence of them (duplicates count once).

    Returns:
        (N,) float64 probabilities summing to 1 (empty for N = 0).

    Example:
        >>> balanced_weights([[0], [0], [1], [0, 1]]).round(4).tolist()  # n_0 = 3, n_1 = 2
        [0.1667, 0.1667, 0.25, 0.4167]
    """
    sets = _label_sets(labels)
    if not sets:
        return np.zeros(0, dtype=np.float64)
    counts = Counter(c for s in sets for c in s)
    weights = np.array([sum(1.0 / counts[c] for c in s) for s in sets], dtype=np.float64)
    return weights / len(counts)


def split_budget(total: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Share `total` draws between groups in proportion to `ratios` (largest remainder, exact sum).

    >>> split_budget(10, {"frame": 1.0, "image": 2.0})
    {'frame': 3, 'image': 7}
    """
    if total < 0:
        raise ValueError(f"sample budget must be >= 0, got {total}")
    if any(r < 0 for r in ratios.values()) or sum(ratios.values()) <= 0:
        raise ValueError(f"group ratios must be >= 0 with a positive sum, got {dict(ratios)}")
    norm = sum(ratios.values())
    exact = {g: total * r / norm for g, r in ratios.items()}
    counts = {g: int(np.floor(v)) for g, v in exact.items()}
    # Hand the draws lost to rounding down to the groups with the largest remainders (ties: group order).
    order = sorted(ratios, key=lambda g: -(exact[g] - counts[g]))
    for g in order[: total - sum(counts.values())]:
        counts[g] += 1
    return counts


class ClassBalancedSampler(Sampler[int]):
    """Draws `num_samples` dataset indices per epoch, with replacement, balanced over categories.

    Args:
        labels: per sample, its category index or indices (see `balanced_weights`).
        num_samples: draws per epoch (the "sample budget").
        groups: per sample, a group name (e.g. "frame" / "image"); None puts all in one group.
        group_ratios: relative share of the draws per group, e.g. {"frame": 1, "image": 1}. A group
            missing from the data gets no draws (its share goes to the others); required with `groups`.
        seed: the draws of epoch e are a function of (seed, e) only.

    Within each group, draws follow `balanced_weights` of that group's labels; the epoch's indices
    are shuffled across groups. `set_epoch(e)` selects the epoch; without it each `iter()` advances
    to the next one.
    """

    def __init__(
        self,
        labels: Sequence[int | Sequence[int]],
        num_samples: int,
        groups: Sequence[str] | None = None,
        group_ratios: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be > 0, got {num_samples}")
        if not labels:
            raise ValueError("ClassBalancedSampler: no samples to draw from")
        if groups is not None and len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries for {len(labels)} samples")
        names = list(groups) if groups is not None else ["all"] * len(labels)
        ratios = dict(group_ratios) if group_ratios is not None else {"all": 1.0}
        unknown = set(names) - set(ratios)
        if unknown:
            raise ValueError(f"group_ratios has no ratio for groups {sorted(unknown)}")
        present = {g: r for g, r in ratios.items() if g in set(names) and r > 0}
        if not present:
            raise ValueError(f"no samples in any group with a positive ratio {ratios}")
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.counts = split_budget(num_samples, present)
        self._pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for g in present:
            idx = np.flatnonzero(np.asarray(names) == g)
            self._pools[g] = (idx, balanced_weights([labels[i] for i in idx]))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def draw(self, epoch: int) -> np.ndarray:
        """The (num_samples,) indices of `epoch`, deterministic in (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        parts = [rng.choice(idx, size=self.counts[g], replace=True, p=w) for g, (idx, w) in self._pools.items()]
        out = np.concatenate(parts)
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[int]:
        indices = self.draw(self.epoch)
        self.epoch += 1
        return iter(indices.tolist())
