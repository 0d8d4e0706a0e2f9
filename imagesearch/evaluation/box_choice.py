"""How each box-choice rule would move S2 and S3 on an annotated split, from one matcher run.

The rules of `matching.boxes` change only the reported frame and boxes, never the item, the
abstentions or a two-piece pair, so re-choosing the entry of every decided trace (`choose_boxes`)
gives exactly the `result.json` that a run with that rule would have written. One evaluation thus
measures every rule; `evaluate_split` stores the table in `metrics.json` (`box_choice`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from imagesearch.data.records import Split
from imagesearch.matching.boxes import FRAME_RULES, ITEM_RULES, choose_boxes
from imagesearch.matching.decisions import MatcherConfig, VideoTrace, results_of
from imagesearch.metrics.official import IOU_THRESHOLD, score

__all__ = ["compare_box_choices"]


def _rechosen(traces: Sequence[VideoTrace], cfg: MatcherConfig, frame_rule: str, item_rule: str) -> list[VideoTrace]:
    out = []
    for t in traces:
        if t.decision is not None:
            d = choose_boxes(
                t.decision, t.queries, frame_rule, item_rule, cfg.top_n, cfg.category_filter, cfg.box_window
            )
            t = dataclasses.replace(t, decision=d)
        out.append(t)
    return out


def compare_box_choices(
    split: Split,
    traces: Sequence[VideoTrace],
    cfg: MatcherConfig,
    rules: Iterable[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """S2 / S3 and the score under each (frame rule, item rule), from decided traces.

    Args:
        split: the annotated split the traces were decided on.
        traces: `Matcher.run`'s decided traces (their queries keep every detection and neighbour).
        cfg: the matcher options of the run (`top_n`, `category_filter`, `box_window`; `box_choice`
            and `item_box_choice` mark the run's own row).
        rules: the pairs to compare; None: every `FRAME_RULES` x `ITEM_RULES`.

    Returns:
        One row per pair: {"box_choice", "item_box_choice", "run" (the run's own rule), "s2_f1",
        "s3_f1", "score", "frames_changed" (videos whose frame differs from the run's),
        "frame_box_ok" / "item_box_ok" (S2 videos whose best pair's frame / product box has IoU > 0.5),
        "s2_videos"}.
    """
    base = results_of(traces)
    rows = []
    for frame_rule, item_rule in rules or itertools.product(FRAME_RULES, ITEM_RULES):
        results = results_of(_rechosen(traces, cfg, frame_rule, item_rule))
        report = score(split, results)
        s2 = [v for v in report.videos if v.s2]
        rows.append({
            "box_choice": frame_rule,
            "item_box_choice": item_rule,
            "run": (frame_rule, item_rule) == (cfg.box_choice, cfg.item_box_choice),
            "s2_f1": report.s2.f1,
            "s3_f1": report.s3.f1,
            "score": report.score,
            "frames_changed": sum(r["frame_index"] != base[v]["frame_index"] for v, r in results.items()),
            "frame_box_ok": sum(v.frame_iou is not None and v.frame_iou > IOU_THRESHOLD for v in s2),
            "item_box_ok": sum(v.item_iou is not None and v.item_iou > IOU_THRESHOLD for v in s2),
            "s2_videos": len(s2),
        })  # fmt: skip
    return rows
