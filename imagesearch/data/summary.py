"""What a split holds, in numbers (`split_summary`) and as text (`format_summary`): `scripts/inspect_data.py`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from imagesearch.data.records import Split

__all__ = ["format_summary", "split_summary"]


def split_summary(split: Split) -> dict[str, Any]:
    """Counts that describe a split, for the inspection CLI and for logs.

    Args:
        split: a loaded split.

    Returns:
        A JSON-serialisable dict: annotated (whether the split has any annotation; False for a test
        split), items, product_images, annotated_images, image_boxes, videos (every video id known from
        a file), annotated_videos, annotated_frames, frame_boxes, videos_present / videos_missing
        (sorted id lists; missing = annotated but no readable .mp4), unreadable_files (the files left
        out as unreadable: images and videos),
        image_boxes_per_category / frame_boxes_per_category (label -> count), instances_per_frame
        (number of distinct instance ids > 0 in a frame -> number of frames),
        frames_with_repeated_instance, distractor_boxes ({"images": n, "frames": n}),
        video_instances_without_item, skipped (reason kind -> count, the kind being the reason text
        before its first ':').
    """
    image_boxes = [b for im in split.product_images() for b in im.boxes]
    frames = [f for v in split.videos.values() for f in v.frames]
    frame_boxes = [b for f in frames for b in f.boxes]
    per_frame = Counter(len({b.instance_id for b in f.boxes if b.instance_id > 0}) for f in frames)
    repeated = sum(
        1 for f in frames if max(Counter(b.instance_id for b in f.boxes if b.instance_id > 0).values(), default=0) > 1
    )
    orphan = {b.instance_id for b in frame_boxes if b.instance_id > 0} - set(split.instance_to_item)
    unreadable = sorted(str(r.path) for r in split.skipped if r.reason.startswith(("unreadable image", "unreadable video")))  # fmt: skip
    return {
        "root": str(split.root),
        "annotated": split.annotated,
        "items": len(split.items),
        "product_images": len(split.product_images()),
        "annotated_images": len(split.annotated_images()),
        "image_boxes": len(image_boxes),
        "videos": len(split.videos),
        "annotated_videos": sum(v.annotated for v in split.videos.values()),
        "annotated_frames": len(frames),
        "frame_boxes": len(frame_boxes),
        "videos_present": sorted(v.video_id for v in split.videos.values() if v.present),
        "videos_missing": sorted(v.video_id for v in split.videos.values() if not v.present),
        "unreadable_files": unreadable,
        "image_boxes_per_category": dict(Counter(b.label for b in image_boxes).most_common()),
        "frame_boxes_per_category": dict(Counter(b.label for b in frame_boxes).most_common()),
        "instances_per_frame": {str(k): per_frame[k] for k in sorted(per_frame)},
        "frames_with_repeated_instance": repeated,
        "distractor_boxes": {
            "images": sum(b.instance_id == 0 for b in image_boxes),
            "frames": sum(b.instance_id == 0 for b in frame_boxes),
        },
        "video_instances_without_item": len(orphan),
        "skipped": dict(Counter(r.reason.split(":", 1)[0] for r in split.skipped).most_common()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """`split_summary(...)` as aligned plain text (what `scripts/inspect_data.py` prints)."""
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
