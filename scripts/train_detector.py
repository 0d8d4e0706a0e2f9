"""Train the SSD300-VGG16 garment detector on the engine; best.pt by AP@0.5 on the validation split.

    python scripts/train_detector.py configs/detector/ssd300_vgg16.yaml
    python scripts/train_detector.py configs/smoke/detector.yaml data.train_roots=[/tmp/syn_a] train.epochs=2
    python scripts/train_detector.py configs/smoke/detector.yaml data.val_root=/tmp/syn_test --evaluate runs/smoke/detector/best.pt

`--evaluate CHECKPOINT` trains nothing: it prints the checkpoint's AP@0.5 on `data.val_root`, overall
and per source (video frames, product images), as JSON.

Writes to `train.out_dir`: config.yaml, train.log, metrics.jsonl (train/loss, train/bbox_regression,
train/classification, val/ap50), tb/ (with the tensorboard extra), last.pt, best.pt. Re-running resumes
from last.pt. `--show-config` prints every config key with its value, default and type.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from imagesearch.cli import add_config_arguments, load_or_show, parse_args, script_parser
from imagesearch.detector.train import DetectorRun, evaluate_checkpoint, run
from imagesearch.engine import FitResult


def main(argv: Sequence[str] | None = None) -> FitResult | dict[str, float]:
    """Parse args, then train (returns the engine's `FitResult`) or, with --evaluate, score a checkpoint."""
    parser = add_config_arguments(script_parser(__doc__), DetectorRun, "optim.lr=0.01 train.epochs=2")
    parser.add_argument(
        "--evaluate", metavar="CHECKPOINT", default=None,
        help="no training: print this checkpoint's AP@0.5 on data.val_root (overall, frames, product images)",
    )  # fmt: skip
    args = parse_args(parser, argv)
    cfg = load_or_show(parser, DetectorRun, args)
    if args.evaluate:
        scores = evaluate_checkpoint(cfg, args.evaluate)
        print(json.dumps({"checkpoint": args.evaluate, **scores}))
        return scores
    result = run(cfg)
    summary = {"best": result.best_metric, "best_epoch": result.best_epoch, "out_dir": str(result.out_dir)}
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
