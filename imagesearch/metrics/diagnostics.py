"""Where the points go: the official score's losses summed by reason, the worst videos, and their text / JSON forms.

`official.score` gives every video its reason and the points it lost at each level (the accounting
is defined in `official`'s docstring: score + every point lost = max_reachable). Here they are
summed per reason (`loss_table`), ranked (`worst_videos`) and written for `metrics.json`
(`diagnostics_dict`) and for `scripts/score.py` (`format_losses`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from imagesearch.metrics.official import LEVEL_WEIGHTS, REASONS, ScoreReport, VideoScore

__all__ = ["LossRow", "diagnostics_dict", "format_losses", "loss_table", "video_record", "worst_videos"]


@dataclass
class LossRow:
    """Points lost for one reason, per level, over the videos that stopped for it.

    Attributes:
        reason: a key of `official.REASONS`.
        videos: how many videos stopped for it.
        s1, s2, s3: points lost at each level.
        points: their sum.
    """

    reason: str
    videos: int
    s1: float
    s2: float
    s3: float
    points: float


def loss_table(report: ScoreReport) -> list[LossRow]:
    """Points lost per reason, largest first (ties in `REASONS` order); hits and reasons that cost nothing left out.

    Args:
        report: an official score report.

    Returns:
        One row per reason that lost points; `report.score + sum(row.points) == report.max_reachable`.

    Example:
        >>> from imagesearch.metrics.official import LevelScore
        >>> lv = LevelScore(0, 0, 1, 0.0, 0.0, 0.0)
        >>> v = VideoScore("v1", None, ["A"], True, reason="abstained", points_lost={"s1": 0.2, "s2": 0.6, "s3": 0.2})
        >>> [(r.reason, r.videos, r.points) for r in loss_table(ScoreReport(lv, lv, lv, 0.0, "all", 1, videos=[v]))]
        [('abstained', 1, 1.0)]
    """
    order = {reason: i for i, reason in enumerate(REASONS)}
    rows: dict[str, LossRow] = {}
    for v in report.videos:
        if v.total_lost <= 0:
            continue
        row = rows.setdefault(v.reason, LossRow(v.reason, 0, 0.0, 0.0, 0.0, 0.0))
        row.videos += 1
        for lv in LEVEL_WEIGHTS:
            setattr(row, lv, getattr(row, lv) + v.points_lost[lv])
        row.points += v.total_lost
    return sorted(rows.values(), key=lambda r: (-round(r.points, 12), order.get(r.reason, len(order))))


def worst_videos(report: ScoreReport, n: int | None = None) -> list[VideoScore]:
    """The videos that lost points, most first (then fewer levels reached, then video id).

    Args:
        report: an official score report.
        n: at most this many (None: all).
    """
    lost = [v for v in report.videos if v.total_lost > 0]
    lost.sort(key=lambda v: (-round(v.total_lost, 12), v.s1 + v.s2 + v.s3, v.video_id))
    return lost if n is None else lost[:n]


def video_record(v: VideoScore) -> dict[str, Any]:
    """One video's diagnostics as plain JSON-ready data (the `VideoScore` fields and `total_lost`)."""
    return asdict(v) | {"total_lost": v.total_lost}


def diagnostics_dict(report: ScoreReport, videos: bool = True) -> dict[str, Any]:
    """The breakdown for `metrics.json`: score, max_reachable, the loss table and (optionally) every video.

    Args:
        report: an official score report.
        videos: include one `video_record` per video, worst first.
    """
    out: dict[str, Any] = {
        "score": report.score,
        "max_reachable": report.max_reachable,
        "losses": [asdict(r) for r in loss_table(report)],
    }
    if videos:
        rest = [v for v in report.videos if v.total_lost <= 0]
        out["videos"] = [video_record(v) for v in worst_videos(report) + sorted(rest, key=lambda v: v.video_id)]
    return out


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def format_losses(report: ScoreReport, worst: int = 10) -> str:
    """Text: the loss table (videos, points per level and in all) and the `worst` worst videos.

    The table's last lines read `score + lost = max_reachable`, e.g. `0.6000 + 0.4000 = 1.0000`.
    """
    lines = [f"{'points lost by reason':<32}{'videos':>7}{'S1':>8}{'S2':>8}{'S3':>8}{'points':>9}"]
    rows = loss_table(report)
    for r in rows:
        lines.append(f"{r.reason:<32}{r.videos:>7}{r.s1:>8.4f}{r.s2:>8.4f}{r.s3:>8.4f}{r.points:>9.4f}")
    lost = sum(r.points for r in rows)
    lines.append(f"score + lost = max reachable: {report.score:.4f} + {lost:.4f} = {report.max_reachable:.4f}")
    shown = worst_videos(report, worst)
    if shown:
        lines.append(
            f"worst videos: {'video':<12}{'pred':>10}{'true':>12}{'rank':>6}{'frame':>7}{'snap':>6}"
            f"{'fIoU':>6}{'iIoU':>6}{'lost':>8}  reason"
        )
        for v in shown:
            lines.append(
                f"{'':<14}{v.video_id:<12}{v.predicted_item or '-':>10}{','.join(v.true_items) or '-':>12}"
                f"{_num(v.rank, 'd'):>6}{_num(v.frame_index, 'd'):>7}{_num(v.snapped_frame, 'd'):>6}"
                f"{_num(v.frame_iou):>6}{_num(v.item_iou):>6}{v.total_lost:>8.4f}  {v.reason}"
            )
    return "\n".join(lines)
