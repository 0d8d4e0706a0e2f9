"""List and prune the gallery, crop and detector-frame caches under a folder (`imagesearch.caches`).

    python scripts/caches.py list                          # data/cache: every cache, size, what made it, when
    python scripts/caches.py list runs/demo --json
    python scripts/caches.py prune --keep 2                # dry run: what keeping the newest 2 per group frees
    python scripts/caches.py prune --older-than 2026-01-01 --kind gallery --yes   # delete for real

Pruning is a dry run unless --yes is given. Interrupted builds are always pruned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from imagesearch.caches import KINDS, delete_caches, find_caches, format_caches, select_prunable
from imagesearch.cli import script_parser


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "prune"):
        p = sub.add_parser(name)
        p.add_argument("root", nargs="?", type=Path, default=Path("data/cache"), help="folder searched for caches")
        p.add_argument("--kind", action="append", choices=KINDS, help="only this kind (repeatable)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("--each-frame-folder", action="store_true", help="one line per detector frame folder")
    prune = sub.choices["prune"]
    prune.add_argument(
        "--keep", type=int, default=None, help="keep the newest N of each group (see imagesearch.caches)"
    )
    prune.add_argument("--older-than", default=None, help="prune caches created before this date (YYYY-MM-DD)")
    prune.add_argument("--yes", action="store_true", help="delete (default: only say what would be deleted)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a folder", file=sys.stderr)
        return 2
    entries = [e for e in find_caches(args.root) if not args.kind or e.kind in args.kind]
    if args.command == "prune":
        older = time.mktime(time.strptime(args.older_than, "%Y-%m-%d")) if args.older_than else None
        entries = select_prunable(entries, keep_newest=args.keep, older_than=older)
    if args.json:
        print(json.dumps([{**asdict(e), "path": str(e.path)} for e in entries], ensure_ascii=False, indent=1))
    else:
        print(format_caches(entries, args.each_frame_folder))
    if args.command == "prune":
        if args.yes:
            print(f"deleted {len(entries)} cache folders, freed {delete_caches(entries) / 2**20:,.1f} MB")
        elif entries:
            print("dry run: nothing deleted; add --yes to delete these")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
