"""Training and evaluation of the classifier on the shared engine (SPEC §3 stage 4).

`ClassifierRun` is the config tree of `scripts/train_classifier.py`; `build_parts` turns it into the
engine's `TrainParts` (model, class-balanced loader, loss, evaluation hook). Each evaluation reports
accuracy, per-class AP, mAP and the confusion matrix (`metrics.classification`), which is also saved in
the run folder (`confusion/epoch_XXX.json`, `confusion.npy`) and drawn into the engine's TensorBoard
writer (`render_confusion`: a picture, so it stays here rather than among the pure metrics). After training,
`run_merging` merges the most confused categories from the best checkpoint's validation predictions.
`run` does both, for the script and the pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from imagesearch.classifier.data import ClassifierDataConfig, build_datasets, build_loaders
from imagesearch.classifier.merging import (
    GROUP_SEP,
    MergeConfig,
    greedy_merge,
    groups_from_merge_map,
    merge_map_from_groups,
    merge_scores,
    save_merge_map,
)
from imagesearch.classifier.model import ClassifierModelConfig, build_classifier, classification_loss, load_classifier
from imagesearch.data.labels import CATEGORIES
from imagesearch.distributed import is_main_process
from imagesearch.engine import FitResult, TrainConfig, TrainParts, train_stage
from imagesearch.io import atomic_write, atomic_write_text
from imagesearch.metrics.classification import classification_metrics, softmax
from imagesearch.optim import OptimConfig
from imagesearch.runtime import progress_bar, resolve_device, seed_everything

log = logging.getLogger(__name__)

BEST_METRIC = "val/map"


@dataclass
class ClassifierRun:
    """The whole config of a classifier run (defaults; YAML files hold only the deltas)."""

    data: ClassifierDataConfig = field(default_factory=ClassifierDataConfig)
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01, warmup_iters=100))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/classifier", epochs=20))
    merge: MergeConfig = field(default_factory=MergeConfig)


def classifier_forward(model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The engine's `forward`: a batch (images (N, 3, S, S), categories (N,)) -> `{"cls": loss}`."""
    images, targets = batch
    return classification_loss(model, images.to(device, non_blocking=True), targets.to(device, non_blocking=True))


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Run the model over a loader of (images, categories).

    Returns:
        (logits (N, K) float32, labels (N,) int64), in loader order.
    """
    device = device or next(model.parameters()).device
    model.eval()
    logits, labels = [], []
    for images, targets in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        logits.append(model(images.to(device)).float().cpu())
        labels.append(targets.clone())  # out of the workers' shared memory (a file descriptor each)
    if not logits:
        raise ValueError("predict: the loader is empty")
    return torch.cat(logits).numpy(), torch.cat(labels).numpy().astype(np.int64)


def render_confusion(confusion: np.ndarray, cell: int = 16) -> np.ndarray:
    """A picture of a confusion matrix: row-normalised rates as colours, class indices on the axes.

    Drawn with OpenCV because matplotlib is not a dependency; cv2's fonts cannot draw the Chinese
    names, so the axes carry class indices (the JSON next to it has the names).

    Args:
        confusion: (K, K) counts, rows true, columns predicted.
        cell: pixels per cell.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    c = np.asarray(confusion, dtype=np.float64)
    k = c.shape[0]
    n = c.sum(axis=1, keepdims=True)
    rates = np.divide(c, n, out=np.zeros_like(c), where=n > 0)
    grid = cv2.resize((rates * 255).astype(np.uint8), (k * cell, k * cell), interpolation=cv2.INTER_NEAREST)
    heat = cv2.cvtColor(cv2.applyColorMap(grid, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    margin = 2 * cell
    canvas = np.full((k * cell + margin, k * cell + margin, 3), 255, dtype=np.uint8)
    canvas[margin:, margin:] = heat
    scale = cell / 40.0
    for i in range(k):
        pos = margin + i * cell + cell // 4
        cv2.putText(canvas, str(i), (pos, margin - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
        cv2.putText(canvas, str(i), (2, pos + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
    return canvas


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.save would append ".npy" to the temporary name
            np.save(fh, array)

    atomic_write(path, write)


class Evaluator:
    """The engine's `evaluate` hook: validation metrics, confusion matrix files and picture.

    Args:
        loader: validation crops (images, categories), in order.
        out_dir: the run folder.
        names: class names (the 23 categories).
        progress: show a progress bar.
    """

    def __init__(self, loader: DataLoader, out_dir: str | Path, names: Sequence[str], progress: bool = True) -> None:
        self.loader, self.out_dir, self.names, self.progress = loader, Path(out_dir), list(names), progress
        self.confusion: np.ndarray | None = None  # the last evaluation's, for `log_visuals`

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """(model, 0-based epoch) -> {"val/acc", "val/map", "val_ap/<category>" for each category present}.

        Per-class APs go under their own prefix so the engine's one-line epoch summary (which shows
        the "val/" keys) stays short; TensorBoard then groups them in a section of their own.
        """
        logits, labels = predict(model, self.loader, progress=self.progress)
        m = classification_metrics(softmax(logits), labels, self.names)
        self.confusion = m["confusion"]
        if is_main_process():
            self._save(m, epoch)
        out = {"val/acc": m["acc"], "val/map": m["map"]}
        return out | {f"val_ap/{name}": ap for name, ap in m["ap"].items()}

    def _save(self, m: dict[str, Any], epoch: int) -> None:
        record = {"epoch": epoch, "categories": self.names, "acc": m["acc"], "map": m["map"], "ap": m["ap"]}
        record["matrix"] = m["confusion"].tolist()
        atomic_write_text(
            self.out_dir / "confusion" / f"epoch_{epoch:03d}.json", json.dumps(record, ensure_ascii=False)
        )
        _save_npy(self.out_dir / "confusion.npy", m["confusion"])

    def log_visuals(self, writer: Any, epoch: int) -> None:
        """The engine's `log_visuals` hook: the last confusion matrix as `val/confusion` (step = epoch)."""
        if self.confusion is not None:
            writer.add_image("val/confusion", render_confusion(self.confusion), epoch, dataformats="HWC")


def build_parts(run: ClassifierRun) -> TrainParts:
    """Everything `engine.train_stage` needs: model, data, the evaluator (val/map picks best.pt; its
    confusion picture goes to TensorBoard) and, after training, the category merging of `run_merging`
    on the same validation loader (`FitResult.extra["merging"]`)."""
    if run.model.num_classes != len(CATEGORIES):
        raise ValueError(f"model.num_classes is {run.model.num_classes}; the crops carry {len(CATEGORIES)} categories")
    seed_everything(run.train.seed, run.train.deterministic)  # the model's init depends on it
    train_ds, val_ds = build_datasets(run.data, run.model.image_size)
    train_loader, val_loader = build_loaders(run.data, train_ds, val_ds, run.train.seed)
    model = build_classifier(run.model)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("classifier: %d trainable / %d parameters, %d train crops, %d val crops",
             n_train, sum(p.numel() for p in model.parameters()), len(train_ds), len(val_ds))  # fmt: skip
    evaluator = Evaluator(val_loader, run.train.out_dir, CATEGORIES, run.train.progress)

    def merge(result: FitResult) -> dict[str, Any]:
        checkpoint = result.best_checkpoint or result.last_checkpoint
        return {"merging": run_merging(checkpoint, val_loader, run.merge, run.train.device, run.train.progress)}

    return TrainParts(
        model, train_loader, forward=classifier_forward, evaluate=evaluator, log_visuals=evaluator.log_visuals,
        config=run, best_metric=BEST_METRIC, mode="max", after_fit=merge,
    )  # fmt: skip


def run_merging(
    checkpoint: str | Path, loader: DataLoader, cfg: MergeConfig, device: str = "auto", progress: bool = True
) -> dict[str, Any]:
    """Merge the categories a trained classifier confuses on validation; write the map and a report.

    Writes `merge_map.json` (`{category: group}`) and `merging.json` (accuracy and mAP before and
    after, the groups, each merge step) next to the checkpoint. After-merge metrics sum the class
    probabilities of each group.

    Args:
        checkpoint: a classifier checkpoint (`best.pt`).
        loader: the validation loader (images, categories).
        cfg: the merging stop rules.
        device: where to run the model.
        progress: show a progress bar.

    Returns:
        The report written to `merging.json`.
    """
    checkpoint = Path(checkpoint)
    model, _ = load_classifier(checkpoint)
    logits, labels = predict(model.to(resolve_device(device)), loader, progress=progress)
    probs = softmax(logits)
    before = classification_metrics(probs, labels, CATEGORIES)
    result = greedy_merge(before["confusion"], cfg, CATEGORIES)
    merge_map = merge_map_from_groups(result.groups, CATEGORIES)
    group_names, class_to_group = groups_from_merge_map(merge_map, CATEGORIES)
    after = classification_metrics(
        merge_scores(probs, class_to_group, len(group_names)), class_to_group[labels], group_names
    )
    report = {
        "checkpoint": str(checkpoint),
        "num_crops": len(labels),
        "before": {"acc": before["acc"], "map": before["map"], "ap": before["ap"]},
        "after": {"acc": after["acc"], "map": after["map"], "ap": after["ap"]},
        "confusion_accuracy_after": result.accuracy_after,
        "groups": [g for g in group_names if GROUP_SEP in g],
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "config": dataclasses.asdict(cfg),
    }
    save_merge_map(checkpoint.parent / "merge_map.json", merge_map)
    atomic_write_text(checkpoint.parent / "merging.json", json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    log.info("merging: acc %.4f -> %.4f, mAP %.4f -> %.4f, %d merges (%s)",
             before["acc"], after["acc"], before["map"], after["map"], len(result.steps), result.stop_reason)  # fmt: skip
    return report


def run(cfg: ClassifierRun) -> FitResult:
    """Train the classifier, then merge its confused categories: `train_stage` of `build_parts`.

    What `scripts/train_classifier.py` and the pipeline's classifier stage do. Writes to
    `cfg.train.out_dir` (config.yaml, metrics.jsonl, confusion/, last.pt, best.pt by val/map, then
    merge_map.json and merging.json) and resumes from its last.pt.

    Returns:
        The engine's `FitResult`; `extra["merging"]` is the report written to merging.json.
    """
    return train_stage(build_parts(cfg))
