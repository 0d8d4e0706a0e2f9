from __future__ import annotations

from imagesearch.metrics import parse_results, score
from imagesearch.metrics.baselines import oracle_results, random_results
from tests.unit.score_split import build_split


def test_oracle_is_perfect_and_random_is_valid_and_worse():
    split = build_split()
    assert score(split, oracle_results(split)).score == 1.0
    rand = random_results(split, seed=3)
    parsed = parse_results(rand)  # the schema the scorer accepts
    # every video with an annotated frame gets a guess; ranked_items is a permutation of the items
    assert set(parsed) == {v for v, video in split.videos.items() if video.frames}
    for pred in parsed.values():
        assert sorted(pred.ranked_items) == sorted(split.items)
        assert pred.item_id == pred.ranked_items[0]
    assert score(split, rand).score < 1.0
    assert random_results(split, seed=3) == rand  # seeded
