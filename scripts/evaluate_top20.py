r"""Evaluate on an annotated split: result.json, metrics.json (official score, top-1/5/20), report.html.

    python scripts/evaluate_top20.py /data/validation_dataset_part1 --config configs/eval/default.yaml \
        --out runs/eval/val detector.checkpoint=runs/detector/best.pt features.checkpoint=runs/embedder/best.pt
    python scripts/evaluate_top20.py ../shared/data/tianchi_sample --config configs/eval/sample_imagenet.yaml \
        --out runs/eval/sample

--gt-boxes uses the annotated boxes of the annotated frames instead of the detector (and annotated
gallery boxes), to separate detection errors from retrieval errors; --gif adds an animated GIF per
video to the report. Videos whose .mp4 is missing or unreadable are counted as misses in the score
over all videos (printed first) and listed. For a split without annotations use scripts/predict.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from imagesearch.evaluation.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return cli_main(argv, __doc__ or "", require_annotations=True)


if __name__ == "__main__":
    main(sys.argv[1:])
