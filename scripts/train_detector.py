"""Train the SSD300-VGG16 garment detector on the engine; best.pt by AP@0.5 on the validation split.

    python scripts/train_detector.py configs/detector/ssd300_vgg16.yaml
    python scripts/train_detector.py configs/smoke/detector.yaml data.train_root=/tmp/syn_a train.epochs=2

Writes to `train.out_dir`: config.yaml, train.log, metrics.jsonl (train/loss, train/bbox_regression,
train/classification, val/ap50), tb/, last.pt, best.pt. Re-running resumes from last.pt.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from imagesearch.config import load_config
from imagesearch.detector.train import DetectorRun, run
from imagesearch.engine import FitResult


def main(argv: Sequence[str] | None = None) -> FitResult:
    """Parse args, build the detector's parts and train them; returns the engine's `FitResult`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML config (deltas from DetectorRun's defaults)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.01 train.epochs=2")
    args = parser.parse_args(argv)
    result = run(load_config(DetectorRun, args.config, args.overrides))
    summary = {"best": result.best_metric, "best_epoch": result.best_epoch, "out_dir": str(result.out_dir)}
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
