"""The command line shared by `scripts/predict.py` and `scripts/evaluate_top20.py`.

Both run `evaluate_split` (gallery, matcher, `result.json`, metrics, report) with an `EvalRun`
config, take the same arguments (the split, `--config`, `--out`, `--gt-boxes`, `--gif`, `key=value`
overrides, `--show-config`) and print the same summary; `evaluate_top20.py` also insists that the
split is annotated, since it is the evaluation command and a score of nothing would be a silent mistake.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from imagesearch.cli import add_config_arguments, load_or_show, parse_args, script_parser
from imagesearch.evaluation.evaluate import EvalRun, evaluate_split, summary_lines


def build_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of both scripts; `doc` (the script's docstring) is shown whole by `--help`."""
    parser = script_parser(doc)
    parser.add_argument("split", help="split folder in the competition layout (annotation folders optional)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    parser.add_argument("--gt-boxes", action="store_true", help="annotated boxes instead of the detector (diagnosis)")
    parser.add_argument("--gif", action="store_true", help="an animated GIF per video in the report")
    return add_config_arguments(parser, EvalRun, "matcher.num_frames=20", positional=False)


def main(argv: Sequence[str] | None, doc: str, require_annotations: bool) -> dict[str, Any]:
    """Parse args, predict (and score when annotated), print the summary; returns the metrics dict."""
    parser = build_parser(doc)
    args = parse_args(parser, argv)  # `SPLIT --out DIR key=value --gt-boxes` in any order
    extra = [f"data.split={args.split}"]
    extra += [f"out_dir={args.out}"] if args.out else []
    extra += ["matcher.gt_boxes=true", "gallery.boxes=annotated"] if args.gt_boxes else []
    extra += ["report.gif=true"] if args.gif else []
    cfg = load_or_show(parser, EvalRun, args, [*extra, *args.overrides])
    if require_annotations:
        cfg.data.require_annotations = True
    metrics = evaluate_split(cfg)
    for line in summary_lines(metrics):
        print(line)
    print(json.dumps({"out_dir": cfg.out_dir, "result": f"{cfg.out_dir}/result.json", "report": metrics.get("report")}))
    return metrics
