"""Generate a deterministic synthetic split in the exact competition layout (SPEC §1).

python scripts/make_synthetic.py --out data/synthetic/train --items 20 --seed 0
python scripts/make_synthetic.py --out /tmp/tiny --items 4 --seed 1 --frames 81 --width 136 --height 240 \
    --image-size 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from imagesearch.synthetic import SyntheticConfig, generate_split


def build_parser() -> argparse.ArgumentParser:
    d = SyntheticConfig()
    parser = argparse.ArgumentParser(
        description=(
            "Write a synthetic split (image/, image_annotation/, video/, video_annotation/, image_text/, "
            "video_text/) whose items are garments of the 23 categories told apart only by colour, texture and "
            "shape. Same arguments -> byte-identical files. The split appears only when complete."
        ),
        epilog=(
            "Item ids are ID_OFFSET, ID_OFFSET+1, ... (6 digits); by default ID_OFFSET = (SEED % 1000) * 1000, so "
            "splits of <= 1000 items made with different seeds below 1000 (e.g. train 0, validation 1, test 2) "
            "never share an id. Width and height must be even (MPEG-4 Part 2)."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="split folder to create")
    parser.add_argument("--items", required=True, type=int, help="number of items (= videos)")
    parser.add_argument("--seed", required=True, type=int, help="split seed")
    parser.add_argument("--frames", type=int, default=d.frames, help=f"frames per video (default {d.frames})")
    parser.add_argument("--fps", type=float, default=d.fps, help=f"video frame rate (default {d.fps:g})")
    parser.add_argument("--width", type=int, default=d.width, help=f"video width, even (default {d.width})")
    parser.add_argument("--height", type=int, default=d.height, help=f"video height, even (default {d.height})")
    parser.add_argument(
        "--image-size", type=int, default=d.image_size, help=f"product image side (default {d.image_size})"
    )
    parser.add_argument(
        "--annotate-every",
        type=int,
        default=d.annotate_every,
        help=f"annotate frames 0, N, 2N, ... (default {d.annotate_every})",
    )
    parser.add_argument("--min-images", type=int, default=d.min_images, help=f"default {d.min_images}")
    parser.add_argument("--max-images", type=int, default=d.max_images, help=f"default {d.max_images}")
    parser.add_argument("--id-offset", type=int, default=None, help="first item id (default (SEED %% 1000) * 1000)")
    parser.add_argument("--no-text", action="store_true", help="do not write image_text/ and video_text/")
    workers = min(os.cpu_count() or 1, 8)
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        help=f"processes rendering items; files do not depend on it (default {workers})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def summarise(root: Path) -> dict[str, int]:
    """Counts of what a split holds: items, images, videos, annotated frames, product and distractor boxes."""
    frames = [
        f for p in sorted((root / "video_annotation").glob("*.json")) for f in json.loads(p.read_text())["frames"]
    ]
    image_anns = [a for p in root.glob("image_annotation/*/*.json") for a in json.loads(p.read_text())["annotations"]]
    frame_anns = [a for f in frames for a in f["annotations"]]
    return {
        "items": sum(1 for p in (root / "image").iterdir() if p.is_dir()),
        "images": len(list(root.glob("image/*/*.jpg"))),
        "videos": len(list((root / "video").glob("*.mp4"))),
        "annotated_frames": len(frames),
        "frames_without_product": sum(all(a["instance_id"] == 0 for a in f["annotations"]) for f in frames),
        "image_boxes": len(image_anns),
        "frame_product_boxes": sum(a["instance_id"] > 0 for a in frame_anns),
        "frame_distractor_boxes": sum(a["instance_id"] == 0 for a in frame_anns),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = SyntheticConfig(
            frames=args.frames, fps=args.fps, width=args.width, height=args.height, image_size=args.image_size,
            annotate_every=args.annotate_every, min_images=args.min_images, max_images=args.max_images,
            text=not args.no_text, id_offset=args.id_offset, workers=max(1, args.workers), overwrite=args.overwrite,
        )  # fmt: skip
    except ValueError as exc:
        build_parser().error(str(exc))
    start = time.perf_counter()
    try:
        root = generate_split(args.out, args.items, args.seed, cfg)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summarise(root).items())
    print(f"{root}: {counts}; seed {args.seed}, {cfg.width}x{cfg.height}x{cfg.frames} video, "
          f"{cfg.image_size}px images, {elapsed:.1f} s with {cfg.workers} worker(s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
