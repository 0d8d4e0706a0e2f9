"""Train the embedder (triplet or ArcFace) on garment crops, or evaluate one on the validation split.

    python scripts/train_embedder.py configs/embedder/triplet.yaml [key=value ...]
    python scripts/train_embedder.py configs/embedder/arcface.yaml optim.lr=3e-4 train.epochs=2
    python scripts/train_embedder.py configs/smoke/embedder.yaml --evaluate                  # untrained baseline
    python scripts/train_embedder.py configs/smoke/embedder.yaml --evaluate --checkpoint runs/x/best.pt

Writes to `train.out_dir`: config.yaml, train.log, metrics.jsonl (val/recall@1/5/20, val/map), tb/,
last.pt, best.pt (by val/recall@1). Re-running resumes from last.pt. `--evaluate` writes eval.json there.
`--show-config` prints every config key with its value, default and type.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from imagesearch.cli import add_config_arguments, load_or_show, parse_args, script_parser
from imagesearch.embedder.train import EmbedderRun, evaluate_run, run
from imagesearch.io import atomic_write_text


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Parse args, then train with the engine (or only evaluate); returns the last validation metrics."""
    parser = add_config_arguments(script_parser(__doc__), EmbedderRun, "optim.lr=3e-4 train.epochs=2")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate (no training); writes eval.json")
    parser.add_argument("--checkpoint", default=None, help="with --evaluate: a trained embedder checkpoint")
    args = parse_args(parser, argv)
    if args.checkpoint and not args.evaluate:
        parser.error("--checkpoint needs --evaluate")
    cfg = load_or_show(parser, EmbedderRun, args)
    if args.evaluate:
        metrics = evaluate_run(cfg, args.checkpoint)
        atomic_write_text(Path(cfg.train.out_dir) / "eval.json", json.dumps(metrics, indent=2) + "\n")
    else:
        result = run(cfg)
        metrics = {k: v for k, v in result.last_metrics.items() if k.startswith(("val/", "train/loss"))}
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
