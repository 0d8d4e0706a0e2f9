"""Summarise a split in the competition layout: items, images, videos, boxes, what was skipped.

    python scripts/inspect_data.py ../shared/data/tianchi_sample
    python scripts/inspect_data.py /data/validation_dataset_part1 --json --strict
    python scripts/inspect_data.py /data/test_dataset     # no annotation folders: files only

A split without image_annotation/ and video_annotation/ (the competition's test split) is reported
by its files: items, product images, videos, unreadable files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from imagesearch.data.reader import DataError, load_split, split_summary

MAX_SKIPPED_SHOWN = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Read one split directory (image/, image_annotation/, image_text/, video/, video_annotation/, "
            "video_text/) and print what it holds: items, product images, boxes per category, annotated and "
            "missing videos, instances per frame, distractors, and the records left out as malformed."
        ),
        epilog=__doc__.split("\n\n", 1)[1] + "\nExit status: 0 on success, 2 when ROOT is not a split or --strict "
        "meets a malformed record.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", metavar="ROOT", help="split directory, e.g. validation_dataset_part1")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.add_argument("--strict", action="store_true", help="stop at the first malformed record (exit 2)")
    parser.add_argument("--no-probe", action="store_true", help="do not open the .mp4 files (faster, fewer checks)")
    return parser


def format_table(summary: dict[str, Any]) -> str:
    """Render `split_summary(...)` as aligned plain text."""
    present, missing = summary["videos_present"], summary["videos_missing"]
    unreadable = summary["unreadable_files"]
    rows = [
        ("root", summary["root"]),
        ("annotations", "yes" if summary["annotated"] else "none (a test split: predict only, no score)"),
        ("items", summary["items"]),
        ("product images", f"{summary['product_images']} ({summary['annotated_images']} annotated)"),
        ("image boxes", summary["image_boxes"]),
        ("videos", summary["videos"]),
        ("annotated videos", summary["annotated_videos"]),
        ("videos present", f"{len(present)} ({' '.join(present)})" if present else "0"),
        ("videos missing", f"{len(missing)} ({' '.join(missing)})" if missing else "0"),
        ("unreadable files", f"{len(unreadable)} ({' '.join(unreadable)})" if unreadable else "0"),
        ("annotated frames", summary["annotated_frames"]),
        ("frame boxes", summary["frame_boxes"]),
        ("distractor boxes", f"{summary['distractor_boxes']['images']} in images, "
                             f"{summary['distractor_boxes']['frames']} in frames"),
        ("frames w/ repeated instance", summary["frames_with_repeated_instance"]),
        ("video instances w/o item", summary["video_instances_without_item"]),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]

    blocks = [
        ("boxes per category (images)", summary["image_boxes_per_category"]),
        ("boxes per category (frames)", summary["frame_boxes_per_category"]),
        ("product instances per annotated frame -> frames", summary["instances_per_frame"]),
        ("skipped records by reason", summary["skipped"]),
    ]
    for title, counts in blocks:
        lines.append(f"\n{title}")
        lines.extend([f"  {key}  {value}" for key, value in counts.items()] or ["  (none)"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        split = load_split(args.root, strict=args.strict, probe_videos=not args.no_probe)
    except (DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = split_summary(split)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(format_table(summary))
    for record in split.skipped[:MAX_SKIPPED_SHOWN]:
        print(f"  skipped {record.path}: {record.field}: {record.reason}")
    if len(split.skipped) > MAX_SKIPPED_SHOWN:
        print(f"  ... and {len(split.skipped) - MAX_SKIPPED_SHOWN} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
