"""Predict a split and, when it is annotated, evaluate: gallery, matcher, `result.json`, metrics, report.

`evaluate_split(cfg)` runs the whole chain and writes under `cfg.out_dir`:
- `result.json`: the competition's format (plus `ranked_items`), for every readable video, whether
  or not the split has annotations (the test split has none: this is the submission);
- `metrics.json`: the video counts (predicted, abstained, missing, unreadable, partly decodable) and,
  on an annotated split, the official S1/S2/S3 F1 and weighted score over all annotated videos
  (missing videos count as misses) and over the present videos only, with counts; top-1/5/20 item
  accuracy; per-crop recall@1/5/20 of the annotated product crops of the sampled annotated frames;
  detector AP@0.5 on the sampled annotated frames (detector mode);
  the points lost by reason and every video's diagnostics (`diagnostics`, see `metrics.official`);
  S2 / S3 under each rule for the reported boxes (`box_choice`, `evaluation.box_choice`);
- `report.html` (+ `img/` for the shown videos, optional GIFs) when `report.html` is on;
- `config.yaml`: the resolved config.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagesearch.config import config_to_dict, write_config
from imagesearch.data.reader import load_split
from imagesearch.data.records import Split
from imagesearch.detector.inference import DetectionConfig
from imagesearch.evaluation.box_choice import compare_box_choices
from imagesearch.evaluation.models import CropClassifier, build_extractor
from imagesearch.features.extract import FeatureConfig
from imagesearch.io import atomic_write_text
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from imagesearch.matching.matcher import Matcher, MatcherConfig, VideoTrace, results_of
from imagesearch.metrics.detection import voc_ap50
from imagesearch.metrics.diagnostics import diagnostics_dict
from imagesearch.metrics.official import ScoreReport, score
from imagesearch.metrics.retrieval import recall_at_k

log = logging.getLogger(__name__)

__all__ = [
    "ClassifierSection",
    "DataSection",
    "DetectorSection",
    "EvalRun",
    "IndexSection",
    "ReportConfig",
    "evaluate_split",
    "summary_lines",
]

KS = (1, 5, 20)


@dataclass
class DataSection:
    """The split evaluated. `split` is usually given on the command line."""

    split: str = ""
    strict: bool = False  # raise on the first malformed record instead of skipping it
    require_annotations: bool = False  # stop when the split has none (evaluate_top20.py sets it)


@dataclass
class DetectorSection(DetectionConfig):
    """A detector checkpoint ("" = none) and how its boxes are post-processed (`DetectionConfig`: one score
    threshold, one NMS, one cap per image, for product images and frames alike)."""

    checkpoint: str = ""
    device: str = "auto"
    amp: bool = True  # float16 autocast of the detector on CUDA (ignored on the CPU)
    batch_size: int = 10  # frames per detector pass; frames of consecutive videos share a batch


@dataclass
class ClassifierSection:
    """A classifier checkpoint and its category merge map, for the category-consistency filter.

    Used only with `matcher.category_filter`. `merge_map` "" reads `merge_map.json` beside the
    checkpoint when present.
    """

    checkpoint: str = ""
    merge_map: str = ""
    batch_size: int = 64
    device: str = "auto"


@dataclass
class IndexSection:
    """The gallery index: "brute" (exact, default), "faiss_flat" or "faiss_ivf" (`nlist`, `nprobe`).

    `device` is where "brute" searches (FAISS here is CPU-only): "auto" = the features' device
    (`features.device`), so a GPU that embeds the crops also searches the gallery; or "cpu", "cuda[:i]".
    """

    kind: str = "brute"
    nlist: int = 100
    nprobe: int = 8
    device: str = "auto"


@dataclass
class ReportConfig:
    """The HTML report: videos worst first, sampled frames with boxes, top product images.

    Attributes:
        html: write report.html and its images.
        gif: also write an animated GIF of each video's sampled frames.
        max_videos: at most this many videos on the page (worst first); the rest are only counted.
        top_k: ranked items shown per video.
        thumb_side: longer side of the frame and product thumbnails, in pixels.
        gif_ms: GIF frame duration in milliseconds.
    """

    html: bool = True
    gif: bool = False
    max_videos: int = 200
    top_k: int = 5
    thumb_side: int = 240
    gif_ms: int = 500


@dataclass
class EvalRun:
    """Everything `scripts/evaluate_top20.py` reads (defaults <- YAML <- key=value overrides)."""

    data: DataSection = field(default_factory=DataSection)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    detector: DetectorSection = field(default_factory=DetectorSection)
    classifier: ClassifierSection = field(default_factory=ClassifierSection)
    index: IndexSection = field(default_factory=IndexSection)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    out_dir: str = "runs/eval"
    progress: bool = True


def _load_models(cfg: EvalRun) -> dict[str, Any]:
    from imagesearch.classifier.merging import load_merge_map

    models: dict[str, Any] = {"detector": None, "classify": None, "merge_map": None, "files": []}
    if cfg.detector.checkpoint:
        from imagesearch.detector import Detector  # a trained stage: imported only when used

        path = Path(cfg.detector.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"detector.checkpoint: detector checkpoint not found: {path}")
        d = cfg.detector
        post = DetectionConfig(d.min_score, d.nms_iou, d.max_per_image)
        models["detector"] = Detector.from_checkpoint(path, device=_device(d.device), amp=d.amp, post=post)
        models["det_file"] = path
    elif not cfg.matcher.gt_boxes or cfg.gallery.boxes == "detector":
        raise ValueError(
            "detector.checkpoint is empty: set it, or use matcher.gt_boxes=true and gallery.boxes=annotated"
        )
    # Categories only serve the category-consistency filter: without it, classifying every crop is wasted.
    if cfg.classifier.checkpoint and cfg.matcher.category_filter:
        models["classify"] = CropClassifier(
            cfg.classifier.checkpoint, cfg.classifier.batch_size, cfg.classifier.device, crop_path=cfg.features.crops
        )
        merge = Path(cfg.classifier.merge_map or Path(cfg.classifier.checkpoint).parent / "merge_map.json")
        if cfg.classifier.merge_map or merge.is_file():
            models["merge_map"] = load_merge_map(merge)
    return models


def _device(spec: str) -> str:
    from imagesearch.runtime import resolve_device

    return str(resolve_device(spec))


def index_device(cfg: EvalRun) -> str:
    return _device(cfg.features.device if cfg.index.device == "auto" else cfg.index.device)


def _level(report: ScoreReport) -> dict[str, Any]:
    levels = {lv: vars(getattr(report, lv)) for lv in ("s1", "s2", "s3")}
    return {**levels, "score": report.score, "num_videos": report.num_scope_videos}


def _crop_recall(traces: list[VideoTrace], gallery_items: np.ndarray) -> dict[str, Any] | None:
    pairs = [p for t in traces for p in t.annotated]
    if not pairs:
        return None
    rows = np.stack([r for _, r in pairs])
    labels = np.where(rows >= 0, gallery_items[np.clip(rows, 0, None)], "")  # padded columns match nothing
    queries = np.array([item for item, _ in pairs])
    # recall_at_k takes ranked gallery indices; give it the (Q, k) rows against the gallery's labels.
    scores = recall_at_k(np.arange(rows.size).reshape(rows.shape), queries, labels.reshape(-1), KS)
    return {**scores, "num_crops": len(pairs)}


def _detector_ap(traces: list[VideoTrace]) -> dict[str, Any] | None:
    pairs = [p for t in traces for p in t.detections]
    if not pairs:
        return None
    ap = voc_ap50([p for p, _ in pairs], [g for _, g in pairs])
    return {"ap50": ap["mAP"], "num_frames": len(pairs), "num_gt": int(sum(ap["num_gt"].values()))}


def _video_counts(split: Split, traces: list[VideoTrace]) -> dict[str, Any]:
    status = {t.video_id: t.status for t in traces}
    ids = lambda s: sorted(v for v, st in status.items() if st == s)  # noqa: E731
    predicted = sorted(t.video_id for t in traces if t.decision is not None and not t.decision.abstained)
    partly = sorted(t.video_id for t in traces if t.frames_lost)
    return {
        "total": len(split.videos),
        "annotated": sum(v.annotated for v in split.videos.values()),
        "present": sum(v.present for v in split.videos.values()),
        "evaluated": sum(st in ("ok", "no garments") for st in status.values()),
        "predicted": len(predicted),
        "abstained": sum(t.decision is not None and t.decision.abstained for t in traces),
        "missing": len(ids("missing")),
        "unreadable": len(ids("unreadable")),
        "no_garments": len(ids("no garments")),  # among the abstained
        "no_frames": len(ids("no frames")),
        "partly_decodable": len(partly),
        "frames_lost": sum(t.frames_lost for t in traces),
        "missing_ids": ids("missing"),
        "unreadable_ids": ids("unreadable"),
        "partly_decodable_ids": partly,
    }


def compute_metrics(
    split: Split, traces: list[VideoTrace], results: dict[str, dict], gallery_items: np.ndarray
) -> tuple[dict[str, Any], ScoreReport | None]:
    """The metrics.json content, and the score report over all videos (for the report's per-video reasons).

    Args:
        split: the evaluated split.
        traces: the matcher's decided traces.
        results: the `result.json` content.
        gallery_items: (G,) item id of each gallery row (for per-crop recall).

    Returns:
        (metrics dict, ScoreReport over all annotated videos). A split without annotations (the test
        split) gets the video counts only, and None for the report.
    """
    if not split.annotated:
        return {"split": str(split.root), "annotated": False, "videos": _video_counts(split, traces)}, None
    status = {t.video_id: t.status for t in traces}  # why a video has no prediction (missing, unreadable, ...)
    report_all = score(split, results, status=status)
    present = [t.video_id for t in traces if t.status in ("ok", "no garments") and split.videos[t.video_id].annotated]
    report_present = score(split, results, video_ids=present, status=status)
    metrics = {
        "split": str(split.root),
        "annotated": True,
        "videos": _video_counts(split, traces),
        "official": {"all": _level(report_all), "present": _level(report_present)},
        "topk": {"all": report_all.topk, "present": report_present.topk},
        "crop_recall": _crop_recall(traces, gallery_items),
        "detector_ap50": _detector_ap(traces),
        # points lost by reason (score + losses = max_reachable) and, over all videos, each video's record
        "diagnostics": {"all": diagnostics_dict(report_all), "present": diagnostics_dict(report_present, False)},
    }
    return metrics, report_all


def evaluate_split(cfg: EvalRun) -> dict[str, Any]:
    """Run the gallery, the matcher and the metrics on one annotated split; write the outputs.

    Args:
        cfg: the resolved run config (`cfg.data.split` must be set).

    Returns:
        The metrics dict written to `<out_dir>/metrics.json`.

    Raises:
        ValueError: no split, or no detector where one is needed.
        FileNotFoundError: a split, weights file or checkpoint that does not exist.
    """
    from imagesearch.evaluation.report import describe_models, write_report

    start = time.time()
    if not cfg.data.split:
        raise ValueError("data.split is empty: give the split folder (SPLIT on the command line)")
    out = Path(cfg.out_dir)
    write_config(cfg, out)
    split = load_split(cfg.data.split, strict=cfg.data.strict)
    if cfg.data.require_annotations and not split.annotated:
        raise ValueError(
            f"{split.root}: no annotation folders, nothing to score: use scripts/predict.py for a test split"
        )
    extractor = build_extractor(cfg.features)
    models = _load_models(cfg)
    det_boxes = cfg.gallery.boxes == "detector"
    files = [models["det_file"]] if det_boxes else []
    if det_boxes and models["classify"] is not None:
        files.append(Path(cfg.classifier.checkpoint))
    gallery = build_gallery(
        split, extractor, cfg.gallery, detector=models["detector"] if det_boxes else None,
        classify=models["classify"] if det_boxes else None, model_files=files, progress=cfg.progress,
    )  # fmt: skip
    index_kwargs: dict[str, Any] = {}
    if cfg.index.kind == "faiss_ivf":
        index_kwargs = {"nlist": cfg.index.nlist, "nprobe": cfg.index.nprobe}
    elif cfg.index.kind == "brute":
        index_kwargs = {"device": index_device(cfg)}
    matcher = Matcher(
        gallery, extractor, cfg.matcher, models["detector"], models["classify"], models["merge_map"],
        cfg.index.kind, index_kwargs, det_batch=cfg.detector.batch_size,
    )  # fmt: skip
    traces = matcher.run(split, progress=cfg.progress)
    results = results_of(traces)
    atomic_write_text(out / "result.json", json.dumps(results, ensure_ascii=False, indent=1) + "\n")
    metrics, report_all = compute_metrics(split, traces, results, np.array(gallery.item_ids))
    if report_all is not None and report_all.max_reachable > 0:  # every box rule scored on this run's items
        metrics["box_choice"] = compare_box_choices(split, traces, cfg.matcher)
    sources = Counter(r.source for r in gallery.records)
    metrics["gallery"] = {"rows": len(gallery), "items": len(set(gallery.item_ids)), "key": gallery.key,
                          "folder": str(gallery.folder) if gallery.folder else None, "built": gallery.built,
                          "row_sources": dict(sorted(sources.items()))}  # fmt: skip
    metrics["features"] = {
        "kind": cfg.features.kind,
        "lbp_weight": cfg.features.lbp_weight,
        "crops": extractor.crop_path,
    }
    metrics["matcher_time_s"] = {k: round(v, 3) for k, v in matcher.timings.items()}  # decode = waiting for frames
    if cfg.report.html:
        roles = {
            "detector": cfg.detector.checkpoint,
            "classifier": cfg.classifier.checkpoint if models["classify"] else "",
        }
        roles |= {f"features ({Path(f).name})": f for f in extractor.files}
        provenance = {"config": config_to_dict(cfg), "models": describe_models(roles)}
        page = write_report(out, split, traces, report_all, cfg.report, metrics, provenance)
        metrics["report"] = str(page)
    metrics["time_s"] = round(time.time() - start, 2)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
    return metrics


def _ids(ids: Sequence[str], limit: int = 10) -> str:
    shown = " ".join(ids[:limit])
    return f" ({shown}{' ...' if len(ids) > limit else ''})" if ids else ""


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """What the prediction / evaluation scripts print: the score over all annotated videos first (a
    missing or unreadable video counts as a miss), then the present videos', then where every video of
    the split went (the counts sum to the split's videos).

    Args:
        metrics: the dict `evaluate_split` returns.

    Returns:
        Lines of text, without newlines.
    """
    v = metrics["videos"]
    lines = []
    if metrics.get("annotated", True):
        a, p = metrics["official"]["all"], metrics["official"]["present"]
        for name, o, topk in (("all", a, metrics["topk"]["all"]), ("present", p, metrics["topk"]["present"])):
            topk = topk or {}
            lines.append(
                f"score {o['score']:.4f} over {name} {o['num_videos']} annotated videos: F1 S1 {o['s1']['f1']:.3f} "
                f"S2 {o['s2']['f1']:.3f} S3 {o['s3']['f1']:.3f}  top1 {topk.get('top1', 0):.3f} top5 {topk.get('top5', 0):.3f}"
            )
        if metrics.get("crop_recall"):
            lines[-1] += f"  crop recall@1 {metrics['crop_recall']['recall@1']:.3f}"
    else:
        lines.append("no annotations in this split: result.json holds the predictions, nothing is scored")
    lines.append(
        f"videos: {v['total']} in the split = {v['predicted']} predicted + {v['abstained']} abstained "
        f"({v['no_garments']} without garments) + {v['no_frames']} without frames + {v['missing']} missing"
        f"{_ids(v['missing_ids'])} + {v['unreadable']} unreadable{_ids(v['unreadable_ids'])}"
    )
    if v["partly_decodable"]:
        lines.append(
            f"partly decodable (sampled among the frames that decode; {v['frames_lost']} frames lost): "
            f"{v['partly_decodable']}{_ids(v['partly_decodable_ids'])}"
        )
    return lines
