"""Evaluate retrieval on an annotated split: result.json, metrics.json (official score, top-k), report.html.

    python scripts/evaluate_top20.py /data/validation_dataset_part1 --config configs/eval/default.yaml \
        --out runs/eval/val detector.checkpoint=runs/detector/best.pt features.checkpoint=runs/embedder/best.pt
    python scripts/evaluate_top20.py ../shared/data/tianchi_sample --config configs/eval/sample_imagenet.yaml \
        --out runs/eval/sample

--gt-boxes uses the annotated boxes of the annotated frames instead of the detector (and annotated
gallery boxes); --gif adds an animated GIF per video to the report. Videos whose .mp4 is missing are
skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from imagesearch.config import load_config
from imagesearch.evaluation import EvalRun, evaluate_split


def headline(metrics: dict[str, Any]) -> str:
    """One line of the main figures (present videos; all annotated videos in brackets)."""
    p, a = metrics["official"]["present"], metrics["official"]["all"]
    topk = metrics["topk"]["present"] or {}
    line = (
        f"score {p['score']:.4f} [all {a['score']:.4f}]  top1 {topk.get('top1', 0):.3f} top5 {topk.get('top5', 0):.3f}"
    )
    if metrics.get("crop_recall"):
        line += f"  crop recall@1 {metrics['crop_recall']['recall@1']:.3f}"
    v = metrics["videos"]
    return line + f"  videos evaluated {v['evaluated']}/{v['annotated']} (missing {v['missing']})"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse args, evaluate, print the headline figures; returns the metrics dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", help="annotated split folder in the competition layout")
    parser.add_argument("--config", default=None, help="YAML config (deltas from EvalRun's defaults)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    parser.add_argument("--gt-boxes", action="store_true", help="annotated boxes instead of the detector")
    parser.add_argument("--gif", action="store_true", help="an animated GIF per video in the report")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. matcher.num_frames=20")
    args = parser.parse_intermixed_args(argv)  # `SPLIT --out DIR key=value --gt-boxes` in any order
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extra = [f"data.split={args.split}"]
    extra += [f"out_dir={args.out}"] if args.out else []
    extra += ["matcher.gt_boxes=true", "gallery.boxes=annotated"] if args.gt_boxes else []
    extra += ["report.gif=true"] if args.gif else []
    cfg = load_config(EvalRun, args.config, [*extra, *args.overrides])
    metrics = evaluate_split(cfg)
    print(headline(metrics))
    print(json.dumps({"out_dir": cfg.out_dir, "report": metrics.get("report")}))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
