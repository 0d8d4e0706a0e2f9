r"""Generate a deterministic synthetic split in the exact competition layout (SPEC §1).

    python scripts/make_synthetic.py --out data/synthetic/train --items 20 --seed 0
    python scripts/make_synthetic.py --out /tmp/tiny --items 4 --seed 1 --frames 81 --width 136 --height 240 \
        --image-size 200

Writes a split (image/, image_annotation/, video/, video_annotation/, image_text/, video_text/) whose
items are garments of the 23 categories told apart only by colour, texture and shape. Same arguments
-> byte-identical files. The split appears only when complete.

Item ids are ID_OFFSET, ID_OFFSET+1, ... (6 digits); by default ID_OFFSET = (SEED % 1000) * 1000, so
splits of <= 1000 items made with different seeds below 1000 (e.g. train 0, validation 1, test 2)
never share an id. Width and height must be even (MPEG-4 Part 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from imagesearch.cli import script_parser
from imagesearch.synthetic import SyntheticConfig, generate_split, split_counts


def build_parser() -> argparse.ArgumentParser:
    d, workers = SyntheticConfig(), min(os.cpu_count() or 1, 8)
    parser = script_parser(__doc__)
    parser.add_argument("--out", required=True, type=Path, help="split folder to create")
    parser.add_argument("--items", required=True, type=int, help="number of items (= videos)")
    parser.add_argument("--seed", required=True, type=int, help="split seed")
    for flag, kind, default, what in [
        ("--frames", int, d.frames, "frames per video"), ("--fps", float, d.fps, "video frame rate"),
        ("--width", int, d.width, "video width, even"), ("--height", int, d.height, "video height, even"),
        ("--image-size", int, d.image_size, "product image side"),
        ("--annotate-every", int, d.annotate_every, "annotate frames 0, N, 2N, ..."),
        ("--min-images", int, d.min_images, "fewest product images per item"),
        ("--max-images", int, d.max_images, "most product images per item"),
        ("--workers", int, workers, "processes rendering items; files do not depend on it"),
    ]:  # fmt: skip
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default {default:g})")
    parser.add_argument("--id-offset", type=int, default=None, help="first item id (default (SEED %% 1000) * 1000)")
    parser.add_argument("--no-text", action="store_true", help="do not write image_text/ and video_text/")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = SyntheticConfig(
            frames=args.frames, fps=args.fps, width=args.width, height=args.height, image_size=args.image_size,
            annotate_every=args.annotate_every, min_images=args.min_images, max_images=args.max_images,
            text=not args.no_text, id_offset=args.id_offset, workers=max(1, args.workers), overwrite=args.overwrite,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    try:
        root = generate_split(args.out, args.items, args.seed, cfg)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in split_counts(root).items())
    print(f"{root}: {counts}; seed {args.seed}, {cfg.width}x{cfg.height}x{cfg.frames} video, "
          f"{cfg.image_size}px images, {elapsed:.1f} s with {cfg.workers} worker(s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
