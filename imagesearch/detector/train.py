"""The detector's run config (`DetectorRun`), what the engine needs to train it (`build_parts`), and `run`.

One epoch draws `data.budget` samples, class-balanced over categories, `data.frames_ratio` of them
video frames (the original drew ~10k frames and ~10k product images); AP@0.5 on the validation split
picks `best.pt`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from imagesearch.backbones import TRUNK_FILE
from imagesearch.data.augment import AugmentConfig, detection_transform
from imagesearch.data.reader import load_split
from imagesearch.data.samplers import ClassBalancedSampler
from imagesearch.detector.data import DetectionDataset, build_samples, collate, seed_worker_transform
from imagesearch.detector.model import DetectorModelConfig, build_detector
from imagesearch.engine import FitResult, TrainConfig, TrainParts, train_stage
from imagesearch.metrics.detection import voc_ap50
from imagesearch.optim import OptimConfig
from imagesearch.runtime import progress_bar, resolve_device, seed_everything

log = logging.getLogger(__name__)

BEST_METRIC = "val/ap50"


@dataclass
class DetectorDataConfig:
    """Where the data is and how it is drawn.

    Attributes:
        train_roots: training splits in the competition layout (every training part); their samples are
            pooled (the detector learns one "garment" class, so ids that repeat across parts do not matter).
        val_root: the validation split; "" for none (best.pt then follows the lowest train/loss, as
            when every annotated image is needed for training, e.g. on a small real sample).
        cache_dir: decoded annotated frames (see `detector.data.cache_frames`).
        frames_ratio: share of each epoch's draws that are video frames (the rest product images).
        budget: samples drawn per epoch, class-balanced over categories (original: ~10k + ~10k).
        val_budget: validation images scored each epoch, a fixed random subset; 0 = all.
        keep_empty: also use frames / images whose annotation has no garment, as negatives.
        batch_size, num_workers: DataLoader settings; num_workers also decodes the frame cache.
        cached_views: 0 augments live (every draw a fresh augmentation); K > 0, with the whole trunk
            frozen (`model.freeze_blocks: 5`) and pretrained weights: K augmented views per training
            image, their trunk outputs computed once and cached under `<cache_dir>/trunk_views/`
            (`detector.cached`; about 5x faster epochs; for small data: ~1.9 MB per view in RAM).
        views_seed: the seed of the cached views' augmentations; None = `train.seed`. A fixed value makes the
            views data, computed once and shared by runs that differ only in their training seed (which
            still draws the head's initialisation, the sampling and the view of each draw).
    """

    train_roots: list[str] = field(default_factory=lambda: ["data/train"])
    val_root: str = "data/val"
    cache_dir: str = "data/cache/detector_frames"
    frames_ratio: float = 0.5
    budget: int = 20000
    val_budget: int = 2000
    keep_empty: bool = False
    batch_size: int = 32
    num_workers: int = 4
    cached_views: int = 0
    views_seed: int | None = None


def _default_optim() -> OptimConfig:
    # SSD300 at lr 1e-3 without clipping diverges within a few steps from a fresh head: clip by default.
    return OptimConfig(name="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4, warmup_iters=500, grad_clip=10.0)


@dataclass
class DetectorRun:
    """Everything `scripts/train_detector.py` reads (defaults <- YAML <- key=value overrides)."""

    data: DetectorDataConfig = field(default_factory=DetectorDataConfig)
    model: DetectorModelConfig = field(default_factory=DetectorModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=_default_optim)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/detector", epochs=12))


def detector_forward(model: nn.Module, batch: tuple[Tensor, list[dict[str, Tensor]]], device: torch.device) -> dict:
    """Engine hook: uint8 batch (N, 3, S, S) and targets -> SSD's loss dict {bbox_regression, classification}."""
    images, targets = batch
    x = images.to(device, non_blocking=True).float().div_(255.0)
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return model(list(x), targets)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, progress: bool = False) -> tuple[list[dict], list[dict]]:
    """The model's detections on a loader of (uint8 images, targets), in loader order, on the CPU.

    Returns:
        (predictions {"boxes", "scores", "labels"}, ground truths {"boxes", "labels"}), one per image, boxes
        in the resized image's pixels (IoU is unchanged by scaling each axis, so AP equals AP on the originals).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions, truths = [], []
    for images, targets in progress_bar(loader, enabled=progress, desc="val", leave=False):
        outputs = model(list(images.to(device).float().div_(255.0)))
        predictions += [{k: v.cpu() for k, v in out.items()} for out in outputs]
        # Copied out of the workers' shared memory: each shared tensor kept alive holds a file descriptor,
        # and a validation split of ~16k images ran out of them ("received 0 items of ancdata").
        truths += [{k: v.clone() for k, v in t.items()} for t in targets]
    model.train(was_training)
    return predictions, truths


def ap_report(predictions: list[dict], truths: list[dict], sources: list[str] | None = None) -> dict[str, float]:
    """AP@0.5 (VOC, `metrics.voc_ap50`) of aligned predictions and truths, overall and per source.

    Args:
        sources: the source of each image ("frame" / "image"); adds AP per source.

    Returns:
        {"val/ap50": mean AP over the classes with ground truth, "val/images": images scored}, plus
        "val/ap50_<source>" and "val/images_<source>" per source when `sources` is given.
    """
    result = voc_ap50(predictions, truths)
    out = {BEST_METRIC: float(result["mAP"]), "val/images": float(len(truths))}
    for source in sorted(set(sources or [])):
        idx = [i for i, s in enumerate(sources or []) if s == source]
        part = voc_ap50([predictions[i] for i in idx], [truths[i] for i in idx])
        out[f"{BEST_METRIC}_{source}"], out[f"val/images_{source}"] = float(part["mAP"]), float(len(idx))
    return out


def evaluate(
    model: nn.Module, loader: DataLoader, progress: bool = False, sources: list[str] | None = None
) -> dict[str, float]:
    """AP@0.5 of `model` on a loader of (uint8 images, targets): `ap_report` of `predict`."""
    return ap_report(*predict(model, loader, progress), sources)


def _dataset(cfg: DetectorRun, roots: list[str], train: bool) -> DetectionDataset:
    d = cfg.data
    if not roots:
        raise ValueError("data.train_roots is empty: list the training splits")
    samples = []
    for root in roots:
        got = build_samples(
            load_split(root), d.cache_dir, keep_empty=d.keep_empty, workers=d.num_workers, progress=cfg.train.progress,
            budget=0 if train else d.val_budget, seed=cfg.train.seed,
        )  # fmt: skip
        if not got:
            raise ValueError(f"{root}: no annotated frames or product images to train / validate on")
        n_frames = sum(s.source == "frame" for s in got)
        log.info("%s: %d frames, %d product images", root, n_frames, len(got) - n_frames)
        samples += got
    transform = detection_transform(train, cfg.augment, size=cfg.model.size, normalize=False)
    return DetectionDataset(samples, transform, cfg.model.classes)


def build_datasets(cfg: DetectorRun) -> tuple[DetectionDataset, DetectionDataset | None]:
    """(train, val) datasets: train with the box-aware augmentations, val resized only (None without val_root)."""
    val = _dataset(cfg, [cfg.data.val_root], train=False) if cfg.data.val_root else None
    return _dataset(cfg, list(cfg.data.train_roots), train=True), val


def _loader_kwargs(cfg: DetectorRun) -> dict:
    # What the train and the validation loaders share (the latter also serves `evaluate_checkpoint`).
    pin = cfg.train.device != "cpu" and torch.cuda.is_available()
    return {"collate_fn": collate, "num_workers": cfg.data.num_workers, "pin_memory": pin}


def _cached_loader(cfg: DetectorRun, model: nn.Module, train_set: DetectionDataset, sampler: ClassBalancedSampler) -> DataLoader:  # fmt: skip
    """The training loader over cached trunk views (`detector.cached`); checks that the trunk allows it."""
    from imagesearch.detector.cached import TrunkViews, ViewSampler, collate_views, compute_views
    from imagesearch.io import file_fingerprint

    weights = str(cfg.model.weights)
    if cfg.model.freeze_blocks != 5 or weights.lower() == "none":
        raise ValueError(
            "data.cached_views needs a pretrained, wholly frozen trunk (model.freeze_blocks=5 and model.weights "
            f"a weights file or name), got freeze_blocks={cfg.model.freeze_blocks}, weights={weights!r}"
        )
    weights_id = file_fingerprint(weights) if Path(weights).is_file() else weights
    views_seed = cfg.train.seed if cfg.data.views_seed is None else cfg.data.views_seed
    views: TrunkViews = compute_views(
        model, train_set, cfg.data.cached_views, views_seed, Path(cfg.data.cache_dir) / "trunk_views",
        weights_id, cfg.augment, progress=cfg.train.progress,
    )  # fmt: skip
    return DataLoader(
        views, batch_size=cfg.data.batch_size, sampler=ViewSampler(sampler, cfg.data.cached_views, cfg.train.seed),
        collate_fn=collate_views, num_workers=0,  # the views are in memory: nothing to load in parallel
    )  # fmt: skip


def write_trunk(result: FitResult) -> dict[str, Any]:
    """`after_fit`: the trained detector's VGG16 trunk as `trunk.pth` beside best.pt, in torchvision's
    `vgg16().features` layout, for the stages that start from it (their `model.weights`)."""
    from imagesearch.detector.model import load_detector
    from imagesearch.io import atomic_write

    source = result.best_checkpoint or result.last_checkpoint
    model, _ = load_detector(source)
    path = result.out_dir / TRUNK_FILE
    atomic_write(path, lambda tmp: torch.save(model.backbone.trunk_state_dict(), tmp))
    log.info("detector: trunk of %s written to %s", source.name, path)
    return {"trunk": str(path)}


def build_parts(cfg: DetectorRun) -> TrainParts:
    """Everything `engine.train_stage` needs: model, class-balanced train loader, forward and evaluate hooks,
    best.pt's metric (val/ap50, or train/loss without a validation split) and the trunk file after training.

    AMP is turned off (with a note on stderr) off CUDA; the run is seeded before the model is built.
    """
    from imagesearch.detector.cached import cached_forward

    if cfg.train.amp and resolve_device(cfg.train.device).type != "cuda":
        print("train.amp: AMP is for CUDA; training in float32 on this device", file=sys.stderr)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp=False))
    seed_everything(cfg.train.seed, cfg.train.deterministic)  # the model's random init depends on it
    if not 0.0 <= cfg.data.frames_ratio <= 1.0:
        raise ValueError(f"data.frames_ratio must be in [0, 1], got {cfg.data.frames_ratio}")
    train_set, val_set = build_datasets(cfg)
    train_set.transform.set_random_seed(cfg.train.seed)  # with num_workers=0; workers re-seed their copy
    sampler = ClassBalancedSampler(
        [s.categories for s in train_set.samples],
        cfg.data.budget,
        groups=[s.source for s in train_set.samples],
        group_ratios={"frame": cfg.data.frames_ratio, "image": 1.0 - cfg.data.frames_ratio},
        seed=cfg.train.seed,
    )
    common = _loader_kwargs(cfg)
    model = build_detector(cfg.model)
    forward = detector_forward
    if cfg.data.cached_views > 0:
        train_loader = _cached_loader(cfg, model, train_set, sampler)
        forward = cached_forward
    else:
        train_loader = DataLoader(
            train_set,
            batch_size=cfg.data.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(cfg.train.seed),
            worker_init_fn=seed_worker_transform,
            **common,
        )
    common_parts = {"config": cfg, "after_fit": write_trunk}
    if val_set is None:
        return TrainParts(model=model, train_loader=train_loader, forward=forward, **common_parts)
    val_loader = DataLoader(val_set, batch_size=cfg.data.batch_size, shuffle=False, **common)  # fixed order
    progress = cfg.train.progress
    sources = [sample.source for sample in val_set.samples]

    def run_eval(model: nn.Module, epoch: int) -> dict[str, float]:
        return evaluate(model, val_loader, progress, sources)

    return TrainParts(
        model=model, train_loader=train_loader, forward=forward, evaluate=run_eval, best_metric=BEST_METRIC,
        mode="max", **common_parts,
    )  # fmt: skip


def run(cfg: DetectorRun) -> FitResult:
    """Train the detector (`scripts/train_detector.py`, the pipeline's detector stage): `train_stage` of
    `build_parts`. Writes to `cfg.train.out_dir` (config.yaml, metrics.jsonl, last.pt, best.pt, trunk.pth)
    and resumes from its last.pt.

    Returns:
        The engine's `FitResult` (`extra["trunk"]`: the trunk file).
    """
    return train_stage(build_parts(cfg))


def predict_checkpoint(cfg: DetectorRun, checkpoint: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """A trained detector's detections on `cfg.data.val_root` (all of it, or `data.val_budget` images).

    The checkpoint's own model config is used (its size, classes, anchors); `cfg` gives the data, the
    batch size and the device.

    Returns:
        (predictions, truths, sources) as `predict` gives them, with each image's source ("frame" / "image").
    """
    from imagesearch.detector.inference import Detector

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"detector checkpoint not found: {path}")
    detector = Detector.from_checkpoint(path, device=resolve_device(cfg.train.device))
    model_cfg = dataclasses.replace(cfg.model, size=detector.size[0], classes=detector.classes)
    val_set = _dataset(dataclasses.replace(cfg, model=model_cfg), [cfg.data.val_root], train=False)
    loader = DataLoader(val_set, batch_size=cfg.data.batch_size, shuffle=False, **_loader_kwargs(cfg))
    predictions, truths = predict(detector.model, loader, cfg.train.progress)
    return predictions, truths, [sample.source for sample in val_set.samples]


def evaluate_checkpoint(cfg: DetectorRun, checkpoint: str | Path) -> dict[str, float]:
    """AP@0.5 of a trained detector on `cfg.data.val_root`, overall and per source (video frames, product
    images), without training (`ap_report` of `predict_checkpoint`)."""
    predictions, truths, sources = predict_checkpoint(cfg, checkpoint)
    return ap_report(predictions, truths, sources)
