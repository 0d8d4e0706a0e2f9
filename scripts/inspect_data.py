"""Summarise a split in the competition layout: items, images, videos, boxes, what was skipped.

    python scripts/inspect_data.py ../shared/data/tianchi_sample
    python scripts/inspect_data.py /data/validation_dataset_part1 --json --strict
    python scripts/inspect_data.py /data/test_dataset     # no annotation folders: files only

Reads one split directory (image/, image_annotation/, image_text/, video/, video_annotation/,
video_text/) and prints what it holds: items, product images, boxes per category, annotated and
missing videos, instances per frame, distractors, and the records left out as malformed. A split
without image_annotation/ and video_annotation/ (the competition's test split) is reported by its
files: items, product images, videos, unreadable files.

Exit status: 0 on success, 2 when ROOT is not a split or --strict meets a malformed record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from imagesearch.cli import script_parser
from imagesearch.data.reader import DataError, load_split
from imagesearch.data.summary import format_summary, split_summary

MAX_SKIPPED_SHOWN = 20


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("root", metavar="ROOT", help="split directory, e.g. validation_dataset_part1")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.add_argument("--strict", action="store_true", help="stop at the first malformed record (exit 2)")
    parser.add_argument("--no-probe", action="store_true", help="do not open the .mp4 files (faster, fewer checks)")
    args = parser.parse_args(argv)
    try:
        split = load_split(args.root, strict=args.strict, probe_videos=not args.no_probe)
    except (DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = split_summary(split)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(format_summary(summary))
    for record in split.skipped[:MAX_SKIPPED_SHOWN]:
        print(f"  skipped {record.path}: {record.field}: {record.reason}")
    if len(split.skipped) > MAX_SKIPPED_SHOWN:
        print(f"  ... and {len(split.skipped) - MAX_SKIPPED_SHOWN} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
