"""Cross-validation of the whole pipeline on a small annotated split: the real-data recipe at the sample's size.

The real 10-item sample has 3 videos: too few to split into train / validation / test. `run_folds`
holds out one video and its item at a time (`data.folds.make_folds`), trains the enabled stages on the
rest (`run_pipeline`, without a validation split), and evaluates the held-out video against the
gallery of every item:

    fold_<video>/            the stages' runs and their evaluation with the detector's own boxes
    fold_<video>/eval_gt/    the same evaluation with the annotated boxes (what detection costs)
    fold_<video>/heldout/    the detector's AP@0.5 on the held-out video's frames and item's images, and how
                             well any kept detection localises each annotated box (`box_iou`)
    final/                   the stages trained on the whole split, and predict.yaml that predicts with them
    folds.json               per fold and pooled: counts, AP, top-1 / top-5, F1 S1/S2/S3, score

Every step is a pipeline stage (`stage.json`): a rerun skips what is done and resumes what is not.
Pooled figures sum the folds' counts (each fold's video is one of N); pooled AP ranks every fold's
detections together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from imagesearch.config import config_to_dict, load_config
from imagesearch.data.folds import Fold, make_folds
from imagesearch.io import atomic_write_text
from imagesearch.metrics.detection import best_iou_per_truth, iou_profile
from imagesearch.metrics.official import LEVEL_WEIGHTS, f1_level
from imagesearch.pipeline import PipelineRun, _checkpoint, _eval_overrides, _run_stage, run_pipeline

log = logging.getLogger(__name__)

__all__ = ["run_folds"]


def _fold_cfg(cfg: PipelineRun, out: Path, train: list[str], eval_split: str, evaluate: bool) -> PipelineRun:
    return dataclasses.replace(
        cfg, out_dir=str(out), train_roots=train, val_root="", eval_split=eval_split,
        cache_dir=cfg.cache_dir or str(Path(cfg.out_dir) / "cache"),  # one cache for every fold: shared images
        folds=dataclasses.replace(cfg.folds, source=""), fusion=dataclasses.replace(cfg.fusion, tune=False),
        eval=dataclasses.replace(cfg.eval, enabled=evaluate),
    )  # fmt: skip


def _heldout_ap(cfg: PipelineRun, fold: Fold, out: Path, staged: dict[str, list[str]], summary: dict) -> Path:
    """The fold detector's detections on the held-out frames and product images (`heldout/detections.pt`)."""
    from imagesearch.detector.train import DetectorRun, predict_checkpoint

    folder = out / "heldout"
    argv = [cfg.detector.config, *cfg.detector.overrides, *staged.get("detector", []),
            f"data.val_root={fold.heldout}", "data.val_budget=0", f"data.cache_dir={Path(cfg.cache_dir) / 'detector_frames'}",
            f"checkpoint={_checkpoint(out / 'detector')}"]  # fmt: skip

    def runner(args: list[str]) -> None:
        checkpoint = args[-1].split("=", 1)[1]
        det_cfg = load_config(DetectorRun, args[0], args[1:-1])
        predictions, truths, sources = predict_checkpoint(det_cfg, checkpoint)
        torch.save({"predictions": predictions, "truths": truths, "sources": sources}, folder / "detections.pt")

    folder.mkdir(parents=True, exist_ok=True)
    _run_stage("heldout", folder, argv, runner, summary)
    return folder / "detections.pt"


def _gt_eval(cfg: PipelineRun, out: Path, eval_split: str, staged: dict[str, list[str]], summary: dict) -> dict:
    from imagesearch.pipeline import RUNNERS

    overrides = [o for o in _eval_overrides(cfg, out, staged) if not o.startswith(("detector.checkpoint=", "out_dir="))]
    argv = [cfg.eval.config, f"data.split={eval_split}", *overrides, "matcher.gt_boxes=true",
            "gallery.boxes=annotated", f"out_dir={out / 'eval_gt'}"]  # fmt: skip
    _run_stage("eval_gt", out / "eval_gt", argv, RUNNERS["eval"], summary)
    return json.loads((out / "eval_gt" / "metrics.json").read_text(encoding="utf-8"))


def _pool_levels(metrics: list[dict]) -> dict[str, Any]:
    """Sum the folds' S1/S2/S3 counts over all annotated videos and recompute P/R/F1 and the score."""
    levels = {}
    for lv in ("s1", "s2", "s3"):
        tp, n_pred, n_gt = (sum(m["official"]["all"][lv][k] for m in metrics) for k in ("tp", "n_pred", "n_gt"))
        levels[lv] = dataclasses.asdict(f1_level(tp, n_pred, n_gt))
    score = sum(w * levels[lv]["f1"] for lv, w in LEVEL_WEIGHTS.items())
    hits = {k: sum(m["topk"]["all"][k] * m["official"]["all"]["num_videos"] for m in metrics if m["topk"]["all"])
            for k in ("top1", "top5")}  # fmt: skip
    videos = sum(m["official"]["all"]["num_videos"] for m in metrics)
    return {**levels, "score": score, "videos": videos, **{k: v / max(videos, 1) for k, v in hits.items()},
            **{f"{k}_hits": round(v) for k, v in hits.items()}}  # fmt: skip


def _detector_figures(files: list[Path]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """The held-out detections of `files`, read once: AP@0.5 overall and per source with the box counts,
    and per source ("frame" / "image") how well any kept detection localises each annotated box, whatever
    its rank (`metrics.iou_profile` of `metrics.best_iou_per_truth`)."""
    from imagesearch.detector.train import ap_report

    got = [torch.load(f, weights_only=True) for f in files]
    predictions = [p for g in got for p in g["predictions"]]
    truths = [t for g in got for t in g["truths"]]
    sources = [s for g in got for s in g["sources"]]
    ap = ap_report(predictions, truths, sources)
    box_iou = {}
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        ap[f"val/boxes_{source}"] = float(sum(len(truths[i]["boxes"]) for i in idx))
        box_iou[source] = iou_profile(best_iou_per_truth([predictions[i] for i in idx], [truths[i] for i in idx]))
    return ap, box_iou


def _row(fold: Fold, own: dict, gt: dict | None, figures: tuple[dict[str, float], dict[str, Any]]) -> dict[str, Any]:
    def brief(m: dict) -> dict[str, Any]:
        o = m["official"]["all"]
        return {"score": o["score"], **{lv: o[lv]["f1"] for lv in ("s1", "s2", "s3")}, **(m["topk"]["all"] or {})}

    return {"video": fold.video_id, "item": fold.item_id, "own_boxes": brief(own), "gt_boxes": brief(gt) if gt else None,
            "detector_ap50": figures[0], "box_iou": figures[1], "result": own.get("report")}  # fmt: skip


def _write_predict_config(cfg: PipelineRun, final: Path, staged: dict[str, list[str]]) -> Path:
    """`final/predict.yaml`: the evaluation config with the final models, for `scripts/predict.py`."""
    from imagesearch.evaluation.evaluate import EvalRun

    overrides = [o for o in _eval_overrides(cfg, final, staged) if not o.startswith(("out_dir=", "gallery.cache_dir="))]
    resolved = load_config(EvalRun, cfg.eval.config, [*overrides, f"out_dir={final / 'predict'}"])
    path = final / "predict.yaml"
    header = f"# Predict a split with the models trained on {cfg.folds.source}:\n#   python scripts/predict.py SPLIT --config {path} --out OUT\n"  # fmt: skip
    atomic_write_text(path, header + yaml.safe_dump(config_to_dict(resolved), sort_keys=False, allow_unicode=True))
    return path


def run_folds(cfg: PipelineRun, staged: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Leave-one-video-out folds of `cfg.folds.source`, then the final models (see the module docstring).

    Returns:
        The content of `folds.json`: {"folds": [per fold], "pooled": {...}, "predict_config", "out_dir"}.
    """
    staged = staged or {}
    out = Path(cfg.out_dir)
    folds = make_folds(cfg.folds.source, out / "splits", list(cfg.folds.holdout) or None)
    rows, own_all, gt_all, ap_files = [], [], [], []
    for fold in folds:
        fold_out = out / f"fold_{fold.video_id}"
        sub = _fold_cfg(cfg, fold_out, [str(fold.train)], str(fold.eval), evaluate=True)
        log.info("folds: holding out video %s (item %s)", fold.video_id, fold.item_id)
        summary = run_pipeline(sub, staged)
        own = summary["metrics"]
        gt = _gt_eval(sub, fold_out, str(fold.eval), staged, summary) if cfg.folds.gt_boxes else None
        ap_files.append(_heldout_ap(sub, fold, fold_out, staged, summary))
        rows.append(_row(fold, own, gt, _detector_figures(ap_files[-1:])))
        own_all.append(own)
        gt_all += [gt] if gt else []
    pooled_ap, pooled_iou = _detector_figures(ap_files)
    result: dict[str, Any] = {
        "source": cfg.folds.source, "folds": rows, "out_dir": str(out),
        "pooled": {"own_boxes": _pool_levels(own_all), "gt_boxes": _pool_levels(gt_all) if gt_all else None,
                   "detector_ap50": pooled_ap, "box_iou": pooled_iou},
    }  # fmt: skip
    if cfg.folds.final:
        final = out / "final"
        run_pipeline(_fold_cfg(cfg, final, [cfg.folds.source], "", evaluate=False), staged)
        result["predict_config"] = str(_write_predict_config(cfg, final, staged))
    atomic_write_text(out / "folds.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def format_folds(result: dict[str, Any]) -> str:
    """The folds' table as plain text: per fold, then pooled (counts beside ratios)."""

    def cells(m: dict | None) -> str:
        if not m:
            return f"{'-':>30}"
        return (f"{m.get('top1', 0):>5.2f} {m.get('top5', 0):>5.2f}  {m['s1']:>4.2f}/{m['s2']:>4.2f}/{m['s3']:>4.2f} "
                f"{m['score']:>5.2f}")  # fmt: skip

    def ap(a: dict[str, float]) -> str:
        return " ".join(f"{a.get(f'val/ap50_{s}', float('nan')):.3f} ({int(a.get(f'val/boxes_{s}', 0))})" for s in ("frame", "image"))

    head = f"{'held out':<16}{'detector AP50 frames (boxes) images (boxes)':<44}{'own boxes: top1 top5 S1/S2/S3 score':<37}annotated boxes"
    lines = [head]
    for r in result["folds"]:
        lines.append(f"{r['video'] + '/' + r['item']:<16}{ap(r['detector_ap50']):<44}{cells(r['own_boxes']):<37}{cells(r['gt_boxes'])}")
    p = result["pooled"]
    flat = lambda m: m and {**m, **{lv: m[lv]["f1"] for lv in ("s1", "s2", "s3")}}  # noqa: E731
    lines.append(f"{'pooled (' + str(p['own_boxes']['videos']) + ' videos)':<16}{ap(p['detector_ap50']):<44}"
                 f"{cells(flat(p['own_boxes'])):<37}{cells(flat(p['gt_boxes']))}")  # fmt: skip
    if result.get("predict_config"):
        lines.append(f"final models: python scripts/predict.py SPLIT --config {result['predict_config']} --out OUT")
    return "\n".join(lines)
