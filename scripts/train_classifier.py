"""Train the garment classifier (VGG16-BN trunk + Inception-C head), then merge confused categories.

    python scripts/train_classifier.py configs/classifier/vgg16bn_inceptionc.yaml
    python scripts/train_classifier.py configs/smoke/classifier.yaml train.epochs=2 data.val_root=/data/val

Writes to `train.out_dir`: config.yaml, train.log, metrics.jsonl (val/acc, val/map, val_ap/<category>),
confusion/epoch_XXX.json, confusion.npy, tb/, last.pt, best.pt (by val/map), then merge_map.json and
merging.json (accuracy and mAP before and after merging). Re-running resumes from last.pt.
`--show-config` prints every config key with its value, default and type.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from imagesearch.classifier.train import ClassifierRun, run
from imagesearch.cli import add_config_arguments, load_or_show, parse_args, script_parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse args, train with the engine, merge categories; returns the merging report."""
    parser = add_config_arguments(script_parser(__doc__), ClassifierRun, "optim.lr=0.01 train.epochs=2")
    args = parse_args(parser, argv)
    report = run(load_or_show(parser, ClassifierRun, args)).extra["merging"]
    summary = {k: {"acc": report[k]["acc"], "map": report[k]["map"]} for k in ("before", "after")}
    print(json.dumps(summary | {"groups": report["groups"]}, ensure_ascii=False))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
