r"""Predict any split (the competition's test split included): result.json for submission, report.html.

    python scripts/predict.py /data/test_dataset --config runs/tianchi/eval/config.yaml --out runs/test
    python scripts/predict.py /data/test_dataset --config configs/eval/default.yaml --out runs/test \
        detector.checkpoint=runs/detector/best.pt features.checkpoint=runs/embedder/best.pt

The split needs only image/<item_id>/<k>.jpg and video/<video_id>.mp4 (text folders optional). The
detector boxes every product image and the sampled frames; result.json (the competition's format)
gets an entry for every readable video that is not abstained. Annotations, when present, never
change the predictions: the same run then also scores them (as evaluate_top20.py does). A missing
or unreadable video is counted; a partly decodable one is sampled among the frames that decode.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from imagesearch.evaluation.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return cli_main(argv, __doc__ or "", require_annotations=False)


if __name__ == "__main__":
    main(sys.argv[1:])
