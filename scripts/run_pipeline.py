r"""Run every stage in turn: (synthetic data ->) detector -> classifier -> embedder -> fusion weight -> evaluation.

    python scripts/run_pipeline.py configs/pipeline/demo.yaml
    python scripts/run_pipeline.py configs/pipeline/tianchi.yaml train_roots=[/data/train_dataset_part1] \
        val_root=/data/validation_dataset_part1 eval_split=/data/validation_dataset_part2

Overrides: pipeline keys (`out_dir=...`, `gt_boxes=true`, `detector.enabled=false`) or a stage's own
keys behind its name (`detector.train.epochs=2`, `eval.matcher.num_frames=20`). Completed stages are
skipped, an interrupted one resumes from its last.pt. Prints the scores with the training seed, and the
path of report.html.
`--show-config` prints every pipeline key with its value, default and type (a stage's own keys: that
stage's script with its config and `--show-config`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from imagesearch.cli import add_config_arguments, load_or_show, parse_args, script_parser
from imagesearch.folds import format_folds, run_folds
from imagesearch.pipeline import PipelineRun, route_overrides, run_pipeline


def seed_text(seed: int | None) -> str:
    """The training seed as printed: the pipeline's `seed`, or the stage configs' own when none is given."""
    return str(seed) if seed is not None else "each stage's own (train.seed)"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse args, run the pipeline, print the headline figures; returns the pipeline summary."""
    parser = add_config_arguments(script_parser(__doc__), PipelineRun, "out_dir=runs/x detector.train.epochs=2")
    args = parse_args(parser, argv)
    own, staged = route_overrides(args.overrides)
    cfg = load_or_show(parser, PipelineRun, args, own)
    if cfg.folds.source:  # cross-validation on a small annotated split, then the final models
        result = run_folds(cfg, staged)
        print(format_folds(result))
        return result
    summary = run_pipeline(cfg, staged)
    metrics = summary.get("metrics")
    if metrics:
        present, everything = metrics["official"]["present"], metrics["official"]["all"]
        topk = metrics["topk"]["present"] or {}
        print(
            f"evaluated {cfg.eval_split}: weighted score {present['score']:.4f} (all annotated videos "
            f"{everything['score']:.4f}), F1 S1/S2/S3 {present['s1']['f1']:.3f}/{present['s2']['f1']:.3f}/"
            f"{present['s3']['f1']:.3f}, top-1 {topk.get('top1', 0):.3f}, top-5 {topk.get('top5', 0):.3f}, "
            f"top-20 {topk.get('top20', 0):.3f}; training seed {seed_text(cfg.seed)}"
        )
        print(f"report: {summary['report']}")
    print(json.dumps({k: summary[k] for k in ("ran", "skipped", "lbp_weight", "out_dir")}))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
