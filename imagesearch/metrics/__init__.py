"""Metrics: the competition's official score and the retrieval / detection metrics (SPEC §2).

- `results`: `result.json` parsing (`parse_results`, `VideoPrediction`, `ResultFormatError`).
- `official`: the S1/S2/S3 score (`score`, `ScoreReport`, `snap_frame`).
- `retrieval`: `topk_item_accuracy`, `rank_gallery`, `recall_at_k`, `mean_average_precision` (dense, small
  sets), `embedding_retrieval_metrics` (the same recall@k and mAP from embeddings, chunked).
- `detection`: `box_iou`, `voc_ap50`.
"""

from imagesearch.metrics.detection import box_iou, voc_ap50
from imagesearch.metrics.official import (
    LEVEL_WEIGHTS,
    LevelScore,
    ScoreReport,
    VideoScore,
    f1_level,
    score,
    snap_frame,
    video_items,
)
from imagesearch.metrics.results import ResultEntry, ResultFormatError, VideoPrediction, parse_results
from imagesearch.metrics.retrieval import (
    embedding_retrieval_metrics,
    mean_average_precision,
    rank_gallery,
    recall_at_k,
    topk_item_accuracy,
)

__all__ = [
    "LEVEL_WEIGHTS",
    "LevelScore",
    "ResultEntry",
    "ResultFormatError",
    "ScoreReport",
    "VideoPrediction",
    "VideoScore",
    "box_iou",
    "embedding_retrieval_metrics",
    "f1_level",
    "mean_average_precision",
    "parse_results",
    "rank_gallery",
    "recall_at_k",
    "score",
    "snap_frame",
    "topk_item_accuracy",
    "video_items",
    "voc_ap50",
]
