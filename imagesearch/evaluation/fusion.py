"""Choosing the fusion weight on a validation split (SPEC §6).

LBP alone is a weak cue and an equal-weight concatenation hurt retrieval on real data, so the LBP
weight is chosen on validation data: `choose_fusion_weight` tries each candidate (weight 0, the global
feature alone, always among them, ties to the smaller weight) by crop top-1; `annotated_query_parts`
cuts the queries (the annotated product crops of the annotated frames); `tune_fusion_weight` runs both
from an evaluation config, as the pipeline's fusion step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from imagesearch.data.prefetch import FramePlan, iter_decoded
from imagesearch.data.reader import load_split
from imagesearch.data.records import Split
from imagesearch.evaluation.evaluate import EvalRun, index_device
from imagesearch.evaluation.models import build_extractor
from imagesearch.features.extract import CropFeatures
from imagesearch.features.fusion import fuse
from imagesearch.matching.gallery import build_gallery
from imagesearch.matching.index import BruteForceIndex
from imagesearch.runtime import progress_bar

log = logging.getLogger(__name__)

__all__ = ["annotated_query_parts", "choose_fusion_weight", "tune_fusion_weight"]

Array = np.ndarray | torch.Tensor


def _top1(
    query: Array, gallery: Array, q_labels: np.ndarray, g_labels: np.ndarray, device: str | torch.device
) -> float:
    # float32, like the matcher's search: the weight is chosen under the arithmetic it will be used with.
    index = BruteForceIndex(device=device)
    index.add(gallery)
    _, nearest = index.search(query, 1)
    return float((g_labels[nearest[:, 0]] == q_labels).mean())


def choose_fusion_weight(
    query_parts: Mapping[str, Array],
    gallery_parts: Mapping[str, Array],
    query_labels: Sequence[object] | np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    candidates: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    global_key: str = "global",
    local_key: str = "lbp",
    device: str | torch.device = "auto",
) -> tuple[float, list[dict[str, float]]]:
    """Pick the local-feature (LBP) weight that maximises validation top-1, global weight fixed at 1.

    For each candidate w the query and gallery parts are fused with {global: 1, lbp: w} and each
    query's nearest gallery row (exact squared Euclidean) is right when it has the query's label.
    Weight 0 is always tried, and ties go to the smaller weight, so on this validation data the
    chosen fusion is never worse than the global feature alone.

    Args:
        query_parts: {global_key: (M, D_g), local_key: (M, D_l)} query features.
        gallery_parts: the same keys, (N, D_g) and (N, D_l).
        query_labels: (M,) labels (e.g. item ids) of the queries.
        gallery_labels: (N,) labels of the gallery rows.
        candidates: weights to try (0 is added when absent).
        global_key: name of the global part.
        local_key: name of the local part whose weight is chosen.
        device: where the exact nearest-neighbour search runs (`BruteForceIndex`, float32); "auto" =
            the device of the parts (torch tensors), the CPU for numpy parts.

    Returns:
        (best weight, table): the table has one {"weight", "top1"} dict per candidate, ascending.
    """
    keys = (global_key, local_key)
    for what, parts in (("query_parts", query_parts), ("gallery_parts", gallery_parts)):
        if set(parts) != set(keys):
            raise ValueError(f"{what} must hold exactly the keys {list(keys)}, got {sorted(parts)}")
    q_labels, g_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(q_labels) != len(query_parts[global_key]) or len(g_labels) != len(gallery_parts[global_key]):
        raise ValueError("query_labels / gallery_labels must have one label per row of the parts")
    table = []
    for w in sorted({0.0, *map(float, candidates)}):
        weights = {global_key: 1.0, local_key: w}
        top1 = _top1(fuse(query_parts, weights), fuse(gallery_parts, weights), q_labels, g_labels, device)
        table.append({"weight": w, "top1": top1})
    # Ascending weights and a strict ">" keep the smallest weight among equals.
    best = table[0]
    for row in table[1:]:
        if row["top1"] > best["top1"]:
            best = row
    return best["weight"], table


def annotated_query_parts(
    split: Split,
    extractor: CropFeatures,
    progress: bool = True,
    workers: int = 0,
    prefetch: int = 2,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feature parts of every annotated product crop (instance > 0) of every annotated frame of the present
    videos, cut with the extractor's crop path and geometry (as the gallery's).

    Args:
        workers, prefetch: decoding processes and videos decoded ahead per process, as the matcher's
            (`data.prefetch.iter_decoded`); 0 workers decodes in this process.

    Returns:
        ({"global": (Q, Dg), "lbp": (Q, Dl)}, the Q true item ids). Unreadable videos are skipped.
    """
    videos = [v for v in split.videos.values() if v.present]
    # Every annotated frame that holds a product box (frames showing distractors alone give no query).
    every_annotated = FramePlan(count=1 << 30, annotated_only=True, products_only=True)
    chunks, items = [], []
    decoded = iter_decoded(videos, every_annotated, workers, prefetch)
    for got in progress_bar(decoded, enabled=progress, total=len(videos), desc="query crops"):
        if got.status != "ok":
            log.warning("%s: %s; left out of the fusion tuning", got.video_id, got.error or got.status)
            continue
        annotated = {f.frame_index: f for f in videos[got.position].frames}
        owners, boxes = [], []
        for j, index in enumerate(got.indices):
            for b in annotated[index].boxes:
                if b.instance_id in split.instance_to_item:
                    owners.append(j)
                    boxes.append(b.xyxy)
                    items.append(split.instance_to_item[b.instance_id])
        if boxes:  # the crop path of the gallery (extractor.crop_path), so the parts are comparable
            images = got.frame_list()
            box_arr = np.array(boxes, np.float64)
            chunks.append(extractor.box_parts(images, np.array(owners), box_arr, extractor.margin, extractor.max_side))
    if not chunks:
        raise ValueError(f"{split.root}: no annotated product crop in a present video to tune the fusion on")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, items


def tune_fusion_weight(cfg: EvalRun, candidates: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)) -> dict[str, Any]:
    """Choose `features.lbp_weight` on a validation split (`cfg.data.split`), with annotated boxes.

    Queries are the annotated product crops of the annotated frames, the gallery the annotated product
    crops of the product images (cached as in `evaluate_split`); `choose_fusion_weight` picks the
    weight with the best crop top-1, weight 0 included and ties to the smaller weight, so on this
    split the fusion is never worse than the global feature alone.

    Returns:
        {"lbp_weight", "table": [{"weight", "top1"}], "split", "num_queries", "num_gallery"}.
    """
    split = load_split(cfg.data.split, strict=cfg.data.strict)
    extractor = build_extractor(cfg.features)
    gallery = build_gallery(split, extractor, replace(cfg.gallery, boxes="annotated"), progress=cfg.progress)
    m = cfg.matcher
    parts, items = annotated_query_parts(split, extractor, cfg.progress, workers=m.decode_workers, prefetch=m.prefetch)
    weight, table = choose_fusion_weight(
        parts, gallery.parts, items, gallery.item_ids, candidates, device=index_device(cfg)
    )
    log.info("fusion: lbp_weight %.3g chosen on %s: %s", weight, split.root, table)
    return {"lbp_weight": weight, "table": table, "split": str(split.root), "num_queries": len(items), "num_gallery": len(gallery)}  # fmt: skip
