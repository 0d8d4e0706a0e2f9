"""A `ScoreReport` as plain text: what `scripts/score.py` prints."""

from __future__ import annotations

from pathlib import Path

from imagesearch.metrics.official import LEVEL_WEIGHTS, ScoreReport

__all__ = ["format_score_table"]


def format_score_table(report: ScoreReport, split_root: str | Path, result_path: str | Path) -> str:
    """The human-readable summary of a score: a table of S1/S2/S3 (TP, N_P, N_GT, P, R, F1), the weighted
    score with its terms, abstentions and unknown ids, and top-k item accuracy when the result ranked items."""
    scope = "all videos" if report.scope == "all" else "present videos only"
    lines = [
        f"split:  {split_root} ({scope}: {report.num_scope_videos})",
        f"result: {result_path}",
        f"{'level':<6}{'TP':>6}{'N_P':>6}{'N_GT':>6}{'P':>9}{'R':>9}{'F1':>9}",
    ]
    for name in LEVEL_WEIGHTS:
        lv = getattr(report, name)
        lines.append(
            f"{name.upper():<6}{lv.tp:>6}{lv.n_pred:>6}{lv.n_gt:>6}{lv.precision:>9.4f}{lv.recall:>9.4f}{lv.f1:>9.4f}"
        )
    terms = " + ".join(f"{w}*F1({n.upper()})" for n, w in LEVEL_WEIGHTS.items())
    lines.append(f"score = {terms} = {report.score:.4f}")
    lines.append(
        f"abstained: {len(report.abstained_videos)}  unknown video ids: {len(report.unknown_videos)}"
        f"  out of scope (ignored): {len(report.out_of_scope_videos)}"
    )
    if report.unknown_videos:
        lines.append(f"unknown video ids (counted in N_P, never right): {', '.join(report.unknown_videos)}")
    if report.topk is not None:
        lines.append("item accuracy: " + "  ".join(f"{k}={v:.4f}" for k, v in report.topk.items()))
    return "\n".join(lines)
