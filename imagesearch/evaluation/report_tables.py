"""The report's tables (HTML strings): scores, points lost by reason, box-choice rules, and the video table."""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from imagesearch.matching.decisions import VideoTrace
from imagesearch.metrics.diagnostics import loss_table
from imagesearch.metrics.official import REASONS, ScoreReport, VideoScore

__all__ = ["loss_section", "score_summary", "video_table"]


class Cell(NamedTuple):
    """A table cell: its (already escaped) HTML, the value it sorts by (None: its text) and a CSS class."""

    html: str
    sort: Any = None
    cls: str = ""


def _text(text: str, cls: str = "l") -> Cell:
    return Cell(html.escape(text), None, cls)


def _num(x: float | None, fmt: str = ".2f") -> Cell:
    # Missing values sort below every number.
    return Cell("-", -1) if x is None else Cell(format(x, fmt), float(x))


def _row(cells: Sequence[Any], tag: str = "td") -> str:
    """A table row; a cell is a `Cell` or any value (shown escaped)."""
    out = []
    for c in cells:
        c = c if isinstance(c, Cell) else Cell(html.escape(str(c)))
        attrs = (f' data-v="{html.escape(str(c.sort))}"' if c.sort is not None else "") + (
            f' class="{c.cls}"' if c.cls else ""
        )
        out.append(f"<{tag}{attrs}>{c.html}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def score_summary(metrics: Mapping[str, Any]) -> str:
    """The scores over all annotated videos and over the present ones, the retrieval figures and the counts."""
    parts = []
    if metrics.get("official"):
        head = _row(["scope", "F1 S1", "F1 S2", "F1 S3", "score", "top-1", "top-5", "top-20"], "th")
        rows = []
        for scope in ("all", "present"):
            o, topk = metrics["official"][scope], (metrics.get("topk") or {}).get(scope) or {}
            cells = [f"{o[lv]['f1']:.3f}" for lv in ("s1", "s2", "s3")] + [f"{o['score']:.3f}"]
            rows.append(_row([f"{scope} ({o['num_videos']} videos)", *cells, *(f"{topk.get(k, 0.0):.3f}" for k in ("top1", "top5", "top20"))]))  # fmt: skip
        parts.append(f"<h2>Scores</h2><table>{head}{''.join(rows)}</table>")
    extra = []
    if metrics.get("crop_recall"):
        cr = metrics["crop_recall"]
        extra.append(f"per-crop recall@1/5/20: {cr['recall@1']:.3f} / {cr['recall@5']:.3f} / {cr['recall@20']:.3f} ({cr['num_crops']} crops)")  # fmt: skip
    if metrics.get("detector_ap50"):
        d = metrics["detector_ap50"]
        extra.append(f"detector AP@0.5: {d['ap50']:.3f} ({d['num_frames']} frames, {d['num_gt']} boxes)")
    if metrics.get("videos") and metrics.get("annotated") is False:
        v = metrics["videos"]
        extra.append(f"No annotations: predictions only. videos: {v['total']} in the split, {v['predicted']} predicted, "
                     f"{v['missing']} missing, {v['unreadable']} unreadable")  # fmt: skip
    elif metrics.get("videos"):
        v = metrics["videos"]
        extra.append(f"videos: {v['total']} in the split ({v['annotated']} annotated), {v['evaluated']} evaluated, "
                     f"{v['predicted']} predicted, {v['missing']} missing, {v['unreadable']} unreadable")  # fmt: skip
    return "".join(parts) + "".join(f"<p>{html.escape(e)}</p>" for e in extra)


def loss_section(report: ScoreReport, box_choice: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Points lost by reason (score + lost = max reachable), and the box-choice rules when measured."""
    rows = loss_table(report)
    head = _row(["reason", "what it means", "videos", "S1", "S2", "S3", "points"], "th")
    body = "".join(
        _row([_text(r.reason), _text(REASONS.get(r.reason, "")), r.videos,
              *(f"{x:.4f}" for x in (r.s1, r.s2, r.s3, r.points))])
        for r in rows
    )  # fmt: skip
    lost = sum(r.points for r in rows)
    total = f"score {report.score:.4f} + points lost {lost:.4f} = maximum reachable {report.max_reachable:.4f}"
    parts = [f"<h2>Where the points go</h2><table>{head}{body}</table><p>{html.escape(total)}</p>"]
    if box_choice:
        head = _row(["frame box rule", "product box rule", "F1 S2", "F1 S3", "score", "frames changed",
                     "frame boxes IoU > 0.5", "product boxes IoU > 0.5"], "th")  # fmt: skip
        body = "".join(
            _row([_text(f"{b['box_choice']}{' (this run)' if b['run'] else ''}"), _text(b["item_box_choice"]),
                  f"{b['s2_f1']:.3f}", f"{b['s3_f1']:.3f}", f"{b['score']:.3f}", b["frames_changed"],
                  f"{b['frame_box_ok']} / {b['s2_videos']}", f"{b['item_box_ok']} / {b['s2_videos']}"])
            for b in box_choice
        )  # fmt: skip
        parts.append(
            "<h3>The reported boxes under each rule (matcher.box_choice / item_box_choice), same items</h3>"
            f"<table>{head}{body}</table>"
        )
    return "".join(parts)


def _link(video_id: str) -> Cell:
    esc = html.escape(video_id)
    return Cell(f'<a href="#v{esc}">{esc}</a>', video_id, "l")


def _prediction_row(t: VideoTrace) -> str:
    """A video of a split without annotations: its prediction, the next items, its votes and distance."""
    d = t.decision
    if d is None or d.item_id is None:
        return _row([_link(t.video_id), "-", _num(None), _text("-"), _num(None), _num(None), len(t.queries)])
    chosen = d.score_of(d.item_id)
    others = [s.item_id for s in d.ranked if s.item_id != d.item_id][:3]
    return _row([_link(t.video_id), d.item_id, _num(d.frame_index, "d"), _text(", ".join(others) or "-"),
                 _num(chosen.votes if chosen else None, "d"), _num(d.distance, ".3f"), len(t.queries)])  # fmt: skip


def video_table(
    shown: Sequence[VideoTrace],
    scores: Mapping[str, VideoScore] | None,
    hidden: int = 0,
    unannotated: Collection[str] = (),
) -> str:
    """One row per shown video, sortable by clicking a header; with `scores`, the diagnostics and the S marks.

    Args:
        shown: the shown videos' traces, in page order.
        scores: video id -> its `VideoScore`; None for a split without annotations.
        hidden: videos not shown (counted in the heading).
        unannotated: videos without an annotation file (in an annotated split: not scored).
    """
    if scores is not None:
        head = ["video", "predicted", "true", "rank", "frame", "snapped", "frame IoU", "item IoU", "S1", "S2", "S3",
                "reason", "points lost"]  # fmt: skip
    else:
        head = ["video", "predicted", "frame", "next items", "votes", "distance", "garments"]
    rows = []
    for t in shown:
        if scores is None:
            rows.append(_prediction_row(t))
        elif t.video_id in scores:
            v = scores[t.video_id]
            marks = [Cell("✓" if getattr(v, lv) else "✗", int(getattr(v, lv))) for lv in ("s1", "s2", "s3")]
            rows.append(_row([_link(t.video_id), v.predicted_item or "-", ", ".join(v.true_items) or "-",
                              _num(v.rank, "d"), _num(v.frame_index, "d"), _num(v.snapped_frame, "d"),
                              _num(v.frame_iou), _num(v.item_iou), *marks, _text(v.reason),
                              _num(v.total_lost, ".4f")]))  # fmt: skip
        else:  # not annotated, or outside N_GT and not predicted: nothing scored
            why = "not annotated: not scored" if t.video_id in unannotated else "no product, not predicted"
            rows.append(_row([_link(t.video_id), "-", "-", *[_num(None)] * 8, _text(why), _num(0.0, ".4f")]))
    note = f" (and {hidden} more not shown)" if hidden else ""
    return (
        f"<h2>Videos shown{note}</h2><p class='muted'>Click a header to sort.</p>"
        f"<table class='sortable'><thead>{_row(head, 'th')}</thead><tbody>{''.join(rows)}</tbody></table>"
    )
