"""Score a result.json against a split's annotations with the competition's rule (SPEC §2).

    python scripts/score.py /data/validation_dataset_part1 runs/val/result.json
    python scripts/score.py ../shared/data/tianchi_sample result.json --present-only --json

Besides the levels, it prints where the points went: the points lost by reason (wrong item, frame off
the annotated grid, frame without the item, frame box / product box IoU <= 0.5, abstained, video
missing, ...; score + points lost = the maximum reachable, 1 when any video shows a product) and the
worst videos with their ranks, frames and IoUs (see `imagesearch.metrics.official`). A video with a
product, no prediction and no .mp4 on disk is counted as "video missing".

Exit status: 0 scored, 2 bad arguments or a malformed result.json (the message names the video and
the field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from imagesearch.data.reader import load_split
from imagesearch.metrics import (
    LEVEL_WEIGHTS,
    ResultFormatError,
    ScoreReport,
    diagnostics_dict,
    format_losses,
    parse_results,
    score,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Score a result.json with the Tianchi Taobao Live rule: P/R/F1 at S1 (item right), S2 (also the "
            "named frame, snapped to the nearest annotated frame within +-20, holds the item) and S3 (also an "
            "item_box and a frame_box with IoU > 0.5 on one instance); score = 0.2 F1(S1) + 0.6 F1(S2) + "
            "0.2 F1(S3). Prints top-1/5/20 item accuracy when the result has 'ranked_items'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("split", type=Path, help="split root in the competition layout (image_annotation/, ...)")
    parser.add_argument("result", type=Path, help="result.json: {video_id: {item_id, frame_index, result: [...]}}")
    parser.add_argument(
        "--json", action="store_true", help="print the full report (per-video details, 'losses' by reason) as JSON"
    )
    parser.add_argument("--worst", type=int, default=10, help="how many of the worst videos to list")
    parser.add_argument(
        "--present-only",
        action="store_true",
        help="count only the videos whose .mp4 is on disk in N_GT (and ignore predictions for the others)",
    )
    return parser


def format_report(report: ScoreReport, split_root: Path, result_path: Path, worst: int = 10) -> str:
    """The human-readable summary: a table of S1/S2/S3, the weighted score, the points lost by reason
    and the `worst` worst videos."""
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
    lines.append(format_losses(report, worst))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.split.is_dir():
        print(f"error: split folder {args.split} does not exist", file=sys.stderr)
        return 2
    try:
        predictions = parse_results(args.result)
    except ResultFormatError as exc:
        print(f"error: malformed result: {exc}", file=sys.stderr)
        return 2
    try:
        split = load_split(args.split)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if split.skipped:
        # lenient reading left records out; a skipped video annotation shrinks N_GT, so say so
        print(f"warning: {len(split.skipped)} malformed annotation records were skipped", file=sys.stderr)
    video_ids = [vid for vid, v in split.videos.items() if v.present] if args.present_only else None
    status = {vid: "missing" for vid, v in split.videos.items() if not v.present}
    report = score(split, predictions, video_ids=video_ids, status=status)
    if args.json:
        out = {"split": str(args.split), "result": str(args.result), "skipped_records": len(split.skipped)}
        out |= report.to_dict() | {"losses": diagnostics_dict(report, videos=False)["losses"]}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, args.split, args.result, args.worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
