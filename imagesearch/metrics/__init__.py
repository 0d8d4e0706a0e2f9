"""Metrics: the competition's official score and the retrieval / detection / classification metrics (SPEC §2).

- `results`: `result.json` parsing (`parse_results`, `VideoPrediction`, `ResultFormatError`).
- `official`: the S1/S2/S3 score (`score`, `ScoreReport`, `snap_frame`), with per-video reasons and points lost.
- `diagnostics`: the points lost summed by reason, the worst videos (`loss_table`, `worst_videos`).
- `retrieval`: `topk_item_accuracy`, `rank_gallery`, `recall_at_k`, `mean_average_precision` (dense, small
  sets), `embedding_retrieval_metrics` (the same recall@k and mAP from embeddings, chunked).
- `detection`: `box_iou`, `voc_ap50`, `best_iou_per_truth` and `iou_profile` (localisation apart from ranking).
- `classification`: `classification_metrics` (accuracy, per-class AP, mAP, confusion matrix), `softmax`.
"""

from imagesearch.metrics.classification import classification_metrics, softmax
from imagesearch.metrics.detection import best_iou_per_truth, box_iou, iou_profile, voc_ap50
from imagesearch.metrics.diagnostics import LossRow, diagnostics_dict, format_losses, loss_table, worst_videos
from imagesearch.metrics.official import (
    LEVEL_WEIGHTS,
    REASONS,
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
    "LossRow",
    "REASONS",
    "ResultEntry",
    "ResultFormatError",
    "ScoreReport",
    "VideoPrediction",
    "VideoScore",
    "best_iou_per_truth",
    "box_iou",
    "classification_metrics",
    "diagnostics_dict",
    "embedding_retrieval_metrics",
    "f1_level",
    "format_losses",
    "iou_profile",
    "loss_table",
    "mean_average_precision",
    "parse_results",
    "rank_gallery",
    "recall_at_k",
    "score",
    "softmax",
    "snap_frame",
    "topk_item_accuracy",
    "video_items",
    "voc_ap50",
    "worst_videos",
]
