"""Score a result.json against a split's annotations with the competition's rule (SPEC §2).

    python scripts/score.py /data/validation_dataset_part1 runs/val/result.json
    python scripts/score.py ../shared/data/tianchi_sample result.json --present-only --json

The Tianchi Taobao Live rule: P/R/F1 at S1 (item right), S2 (also the named frame, snapped to the
nearest annotated frame within +-20, holds the item) and S3 (also an item_box and a frame_box with
IoU > 0.5 on one instance); score = 0.2 F1(S1) + 0.6 F1(S2) + 0.2 F1(S3). Prints top-1/5/20 item
accuracy when the result has 'ranked_items'. Then where the points went: the points lost by reason
(wrong item, frame off the annotated grid, frame without the item, frame box / product box IoU <= 0.5,
abstained, video missing, ...; score + points lost = the maximum reachable, 1 when any video shows a
product) and the worst videos with their ranks, frames and IoUs (see `imagesearch.metrics.official`).
A video with a product, no prediction and no .mp4 on disk is counted as "video missing".

Exit status: 0 scored, 2 bad arguments or a malformed result.json (the message names the video and
the field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from imagesearch.cli import script_parser
from imagesearch.data.reader import load_split
from imagesearch.metrics import ResultFormatError, diagnostics_dict, format_losses, parse_results, score
from imagesearch.metrics.score_table import format_score_table


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("split", type=Path, help="split root in the competition layout (image_annotation/, ...)")
    parser.add_argument("result", type=Path, help="result.json: {video_id: {item_id, frame_index, result: [...]}}")
    parser.add_argument(
        "--json", action="store_true", help="print the full report (per-video details, 'losses') as JSON"
    )
    parser.add_argument("--worst", type=int, default=10, help="how many of the worst videos to list")
    parser.add_argument("--present-only", action="store_true",
                        help="count only the videos whose .mp4 is on disk in N_GT (and ignore predictions for the others)")  # fmt: skip
    return parser


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
        print(format_score_table(report, args.split, args.result) + "\n" + format_losses(report, args.worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
