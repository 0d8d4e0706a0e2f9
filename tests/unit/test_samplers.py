"""Class-balanced sampling (SPEC §3 stage 1): weights by hand, balance on a skewed index, group ratio."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from imagesearch.data.samplers import NO_LABEL, ClassBalancedSampler, balanced_weights, split_budget


def test_balanced_weights_by_hand() -> None:
    # n_0 = 3 samples hold category 0, n_1 = 2 hold category 1, C = 2:
    # P = (1/2) * [1/3, 1/3, 1/2, 1/3 + 1/2] = [1/6, 1/6, 1/4, 5/12].
    w = balanced_weights([[0], [0], [1], [0, 1]])
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 1 / 4, 5 / 12])
    # Single labels as ints; a duplicated label counts once; an empty sample is its own category.
    np.testing.assert_allclose(balanced_weights([5, 5, 7]), [1 / 4, 1 / 4, 1 / 2])
    np.testing.assert_allclose(balanced_weights([[3, 3], [4]]), [1 / 2, 1 / 2])
    np.testing.assert_allclose(balanced_weights([[], [1], [1], [1]]), [1 / 2, 1 / 6, 1 / 6, 1 / 6])
    assert NO_LABEL == -1


def test_split_budget_is_exact() -> None:
    assert split_budget(10, {"frame": 1, "image": 2}) == {"frame": 3, "image": 7}
    assert split_budget(7, {"a": 0.5, "b": 0.5}) == {"a": 4, "b": 3}  # tie: the first group gets the spare draw
    assert split_budget(5, {"a": 0.0, "b": 1.0}) == {"a": 0, "b": 5}
    with pytest.raises(ValueError, match="positive sum"):
        split_budget(5, {"a": 0.0})


def test_drawn_categories_are_balanced_on_a_skewed_index() -> None:
    # 100 : 20 : 4 samples; uniform drawing would give category 2 about 3% of the draws.
    labels = [0] * 100 + [1] * 20 + [2] * 4
    sampler = ClassBalancedSampler(labels, num_samples=6000, seed=0)
    counts = Counter(labels[i] for i in sampler)
    assert sum(counts.values()) == 6000
    assert max(counts.values()) / min(counts.values()) < 1.1, counts
    # Every one of the 4 rare samples is drawn about 2000 / 4 = 500 times.
    rare = Counter(i for i in sampler.draw(0) if labels[i] == 2)
    assert set(rare) == {120, 121, 122, 123}


def test_group_ratio_budget_and_epoch_seeding() -> None:
    labels = [[0], [1, 2], [1], [3]] * 5 + [[0]] * 30
    groups = ["frame"] * 20 + ["image"] * 30
    sampler = ClassBalancedSampler(labels, 400, groups=groups, group_ratios={"frame": 1, "image": 3}, seed=7)
    drawn = sampler.draw(0)
    assert len(sampler) == 400 and len(drawn) == 400
    assert int(np.sum(drawn < 20)) == 100  # frames are indices 0..19: exactly a quarter of the budget
    # Within the frames, categories 0 and 3 (one sample each per 4) are drawn equally often.
    frame_counts = Counter(c for i in drawn[drawn < 20] for c in labels[i])
    assert frame_counts[1] > frame_counts[0] > 0 and 0.6 < frame_counts[0] / frame_counts[3] < 1.6
    # Deterministic per (seed, epoch); epochs differ; iter() advances the epoch unless set_epoch is called.
    np.testing.assert_array_equal(drawn, sampler.draw(0))
    assert not np.array_equal(drawn, sampler.draw(1))
    sampler.set_epoch(0)
    assert list(sampler) == drawn.tolist()
    assert list(sampler) == sampler.draw(1).tolist()


def test_missing_group_gets_no_draws_and_errors_name_the_problem() -> None:
    sampler = ClassBalancedSampler([0, 1, 1], 10, groups=["image"] * 3, group_ratios={"frame": 0.5, "image": 0.5})
    assert len(sampler.draw(0)) == 10  # no frames: the images take the whole budget
    with pytest.raises(ValueError, match="no ratio for groups"):
        ClassBalancedSampler([0, 1], 4, groups=["frame", "video"], group_ratios={"frame": 1})
    with pytest.raises(ValueError, match="num_samples"):
        ClassBalancedSampler([0, 1], 0)
