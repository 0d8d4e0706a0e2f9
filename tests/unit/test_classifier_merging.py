"""Category merging on hand-made confusion matrices, merged metrics, and the merge map's JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imagesearch.classifier.merging import (
    MergeConfig,
    confusion_rates,
    greedy_merge,
    group_confusion,
    groups_from_merge_map,
    load_merge_map,
    merge_map_from_groups,
    merge_scores,
    save_merge_map,
)
from imagesearch.data.labels import CATEGORIES
from imagesearch.metrics.classification import classification_metrics

# Rows true, columns predicted; n = (10, 10, 10, 20, 10), 44 of 60 right (acc 0.7333).
CONFUSION = np.array(
    [
        [8, 2, 0, 0, 0],
        [4, 6, 0, 0, 0],
        [0, 0, 9, 1, 0],
        [0, 0, 3, 17, 0],
        [3, 3, 0, 0, 4],
    ]
)
NAMES = ["a", "b", "c", "d", "e"]


def test_confusion_rates_by_hand() -> None:
    rates = confusion_rates(CONFUSION)
    # rate(x, y) = (C[x, y] / n_x + C[y, x] / n_y) / 2
    assert math.isclose(rates[0, 1], (2 / 10 + 4 / 10) / 2)  # 0.3
    assert math.isclose(rates[2, 3], (1 / 10 + 3 / 20) / 2)  # 0.125
    assert math.isclose(rates[0, 4], (0 / 10 + 3 / 10) / 2)  # 0.15
    assert math.isclose(rates[1, 4], 0.15)
    assert rates[0, 2] == 0 and np.all(np.diag(rates) == 0) and np.allclose(rates, rates.T)


def test_greedy_merge_until_target() -> None:
    result = greedy_merge(CONFUSION, MergeConfig(target_accuracy=0.99, min_confusion=0.1, max_merges=10), NAMES)
    # Step 1: a+b (0.3; ties with nothing). Acc (8+2+4+6 + 9 + 17 + 4) / 60 = 50/60.
    # Step 2: groups {a,b} vs e: (0/20 + 6/10) / 2 = 0.3 > c+d 0.125. Acc 56/60.
    # Step 3: c+d (0.125 >= 0.1). Acc 60/60 >= 0.99: stop.
    assert result.groups == [[0, 1, 4], [2, 3]]
    assert [s["merged"] for s in result.steps] == [["a", "b"], ["a+b", "e"], ["c", "d"]]
    assert [round(s["rate"], 6) for s in result.steps] == [0.3, 0.3, 0.125]
    assert [round(s["accuracy_after"], 6) for s in result.steps] == [round(50 / 60, 6), round(56 / 60, 6), 1.0]
    assert math.isclose(result.accuracy_before, 44 / 60) and result.accuracy_after == 1.0
    assert merge_map_from_groups(result.groups, NAMES) == {
        "a": "a+b+e", "b": "a+b+e", "c": "c+d", "d": "c+d", "e": "a+b+e"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "groups", "reason"),
    [
        (MergeConfig(target_accuracy=0.8, min_confusion=0.1, max_merges=10), [[0, 1], [2], [3], [4]], "accuracy"),
        (MergeConfig(target_accuracy=0.99, min_confusion=0.2, max_merges=10), [[0, 1, 4], [2], [3]], "min_confusion"),
        (MergeConfig(target_accuracy=0.99, min_confusion=0.1, max_merges=1), [[0, 1], [2], [3], [4]], "max_merges"),
        (MergeConfig(target_accuracy=0.99, min_confusion=0.1, max_merges=0), [[0], [1], [2], [3], [4]], "max_merges"),
    ],
)
def test_greedy_merge_stops(cfg: MergeConfig, groups: list[list[int]], reason: str) -> None:
    result = greedy_merge(CONFUSION, cfg, NAMES)
    assert result.groups == groups
    assert reason in result.stop_reason


def test_no_merge_without_confusion() -> None:
    # Nothing confused: accuracy 1 stops at once; with an unreachable target a zero rate still never merges.
    perfect = np.array([[2, 0, 0], [0, 0, 0], [0, 0, 1]])
    result = greedy_merge(perfect, MergeConfig(target_accuracy=0.99, min_confusion=0.0, max_merges=5))
    assert result.groups == [[0], [1], [2]] and "accuracy" in result.stop_reason
    result = greedy_merge(perfect, MergeConfig(target_accuracy=1.01, min_confusion=0.0, max_merges=5))
    assert result.groups == [[0], [1], [2]] and "min_confusion" in result.stop_reason


def test_group_confusion_and_scores() -> None:
    merged = group_confusion(CONFUSION, [[0, 1, 4], [2, 3]])
    assert merged.tolist() == [[30, 0], [0, 30]]
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    assert np.allclose(merge_scores(scores, np.array([0, 1, 0, 1]), 2), [[0.4, 0.6], [0.8, 0.2]])


def test_merged_metrics_by_hand() -> None:
    # Three classes; a and b are swapped on two crops. Merging a+b fixes both.
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.3, 0.6, 0.1]])
    labels = np.array([1, 0, 2, 0])
    before = classification_metrics(probs, labels, ["a", "b", "c"])
    assert before["acc"] == 0.5  # only crops 1 and 2
    assert before["confusion"].tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    # AP(a): scores 0.6(b) 0.5(a) 0.3(a) 0.2(c) -> precisions 1/2, 2/3 -> (1/2 + 2/3) / 2 = 7/12.
    # AP(b): scores 0.6(a) 0.4(a) 0.3(b) 0.2(c) -> 1/3. AP(c) = 1.
    assert math.isclose(before["ap"]["a"], 7 / 12) and math.isclose(before["ap"]["b"], 1 / 3)
    assert math.isclose(before["map"], (7 / 12 + 1 / 3 + 1) / 3)
    names, index = groups_from_merge_map({"a": "a+b", "b": "a+b", "c": "c"}, ["a", "b", "c"])
    assert names == ["a+b", "c"] and index.tolist() == [0, 0, 1]
    after = classification_metrics(merge_scores(probs, index, 2), index[labels], names)
    assert after["acc"] == 1.0 and math.isclose(after["map"], 1.0)


def test_merge_map_round_trip(tmp_path) -> None:
    merge_map = {c: c for c in CATEGORIES} | {"短裙": "短裙+中等半身裙", "中等半身裙": "短裙+中等半身裙"}
    path = save_merge_map(tmp_path / "merge_map.json", merge_map)
    assert load_merge_map(path) == merge_map
    assert json.loads(path.read_text(encoding="utf-8"))["短裙"] == "短裙+中等半身裙"  # UTF-8, not \u escapes
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"短裙": 3}', "must be a JSON object"),
        ('{"裙子": "x"}', "unknown categories"),
        ("{", "not valid JSON"),
    ],
)
def test_load_merge_map_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.json: .*{message}"):
        load_merge_map(path)
