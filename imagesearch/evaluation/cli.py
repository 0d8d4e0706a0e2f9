"""The command line shared by `scripts/predict.py` and `scripts/evaluate_top20.py`.

Both run `evaluate_split` (gallery, matcher, `result.json`, metrics, report) with an `EvalRun`
config; `evaluate_top20.py` also insists that the split is annotated, since it is the evaluation
command and a score of nothing would be a silent mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

from imagesearch.config import load_config
from imagesearch.evaluation.evaluate import EvalRun, evaluate_split, summary_lines


def build_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of both scripts; `doc` (the script's docstring) is shown whole by `--help`."""
    first, _, rest = doc.strip().partition("\n")
    parser = argparse.ArgumentParser(
        description=first, epilog=rest.strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", help="split folder in the competition layout (annotation folders optional)")
    parser.add_argument("--config", default=None, help="YAML config (deltas from EvalRun's defaults)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    parser.add_argument("--gt-boxes", action="store_true", help="annotated boxes instead of the detector (diagnosis)")
    parser.add_argument("--gif", action="store_true", help="an animated GIF per video in the report")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. matcher.num_frames=20")
    return parser


def main(argv: Sequence[str] | None, doc: str, require_annotations: bool) -> dict[str, Any]:
    """Parse args, predict (and score when annotated), print the summary; returns the metrics dict."""
    args = build_parser(doc).parse_intermixed_args(argv)  # `SPLIT --out DIR key=value --gt-boxes` in any order
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extra = [f"data.split={args.split}"]
    extra += [f"out_dir={args.out}"] if args.out else []
    extra += ["matcher.gt_boxes=true", "gallery.boxes=annotated"] if args.gt_boxes else []
    extra += ["report.gif=true"] if args.gif else []
    cfg = load_config(EvalRun, args.config, [*extra, *args.overrides])
    if require_annotations:
        cfg.data.require_annotations = True
    metrics = evaluate_split(cfg)
    for line in summary_lines(metrics):
        print(line)
    print(json.dumps({"out_dir": cfg.out_dir, "result": f"{cfg.out_dir}/result.json", "report": metrics.get("report")}))
    return metrics
