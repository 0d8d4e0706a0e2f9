"""Training throughput of each stage: ours against a named torchvision peer on the same batch (issue 7).

    python benchmarks/train_throughput.py --device cuda --amp bf16 --channels-last
    python benchmarks/train_throughput.py --smoke --threads 2          # a CPU check in a few minutes

A row is one full training step as `imagesearch.engine.train_one_epoch` takes it (autocast forward,
the loss dict summed and checked finite, backward through a GradScaler, gradient clipping when the
stage's config clips, optimizer step, LR step), on a fixed random batch already on the device, with
random weights (nothing is downloaded). Every row of a stage gets the same batch and the stage
config's optimizer; `--amp` and `--channels-last` apply to every row alike. Rows per stage:

- detector, `configs/detector/ssd300_vgg16.yaml` (SSD300, one garment class, VGG16 trunk frozen,
  BatchNorm in the extra layers): uint8 300x300 images with 1-4 random boxes each, fed through
  `detector.train.detector_forward`, against torchvision `ssd300_vgg16(weights=None,
  weights_backbone=None, num_classes=2)`, which trains every layer;
- classifier, `configs/classifier/vgg16bn_inceptionc.yaml` (VGG16-BN trunk frozen, 1x1 neck,
  3 Inception-C, FC 23) on 224x224 crops, against torchvision `vgg16_bn(weights=None,
  num_classes=23)`, all trainable (its 4096-wide FC head included);
- embedder, `configs/embedder/triplet.yaml` (the classifier without FC, neck and blocks trainable,
  PML TripletMarginLoss on the sampler's fixed triplets) on 224x224 crops, against torchvision
  `vgg16_bn` features + global average pool + L2 norm, all trainable, with the same PML loss.

Where the config freezes something, a row "ours, all trainable" is added, so the comparison with a
peer that trains everything can be read both ways. `--batch` counts images per step; the embedder
takes round(batch / 3) triplets (3 crops each). Reported: the median of `--iters` timed steps after
`--warmup` untimed ones (the rows take turns, `_common.time_interleaved`), as images/s, and the
ratio ours / peer per stage; on CUDA also the step's peak memory above what was allocated before it.

`--smoke` builds ours from `configs/smoke/*.yaml` (1/8-width trunks at 64-160 px) and the VGG peers at
the same width through torchvision's own `vgg.make_layers`; torchvision's SSD300 has no width or
size knob, so the smoke detector peer stays full size (its transform resizes the batch to 300): its
ratio, unlike the others, compares a tiny model with a full one. Smoke figures check that the
benchmark runs; they say nothing about the full models.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, reducers
from torch import Tensor, nn
from torchvision.models import vgg, vgg16_bn
from torchvision.models.detection import ssd300_vgg16

try:
    from benchmarks import _common
except ImportError:  # run as a script (python benchmarks/train_throughput.py): its folder is on sys.path
    import _common  # type: ignore[no-redef]
from imagesearch.classifier.model import build_classifier
from imagesearch.classifier.train import ClassifierRun, classifier_forward
from imagesearch.config import load_config
from imagesearch.detector.model import build_detector
from imagesearch.detector.train import DetectorRun, detector_forward
from imagesearch.embedder.loss import EmbedderWithLoss, build_loss
from imagesearch.embedder.model import build_embedder
from imagesearch.embedder.train import EmbedderRun
from imagesearch.engine import AMP_DTYPES, default_forward, train_one_epoch
from imagesearch.optim import OptimConfig, build_optimizer, build_scheduler

NAME = "train_throughput"
STAGES = ("detector", "classifier", "embedder")
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = {
    False: {"detector": "detector/ssd300_vgg16.yaml", "classifier": "classifier/vgg16bn_inceptionc.yaml",
            "embedder": "embedder/triplet.yaml"},
    True: {"detector": "smoke/detector.yaml", "classifier": "smoke/classifier.yaml", "embedder": "smoke/embedder.yaml"},
}  # fmt: skip
AMP_CHOICES = {"bf16": "bfloat16", "fp16": "float16"}
COLUMNS = [
    ("stage", "stage", "s"),
    ("row", "model", "s"),
    ("trainable_m", "train M", ".1f"),
    ("params_m", "total M", ".1f"),
    ("median_s", "s/step", ".3f"),
    ("images_per_s", "images/s", ",.1f"),
    ("step_peak_mb", "step peak MB", ",.0f"),
]


@dataclass
class Row:
    """One model of a stage: what a step trains, how the batch reaches it (the engine's `forward` hook)."""

    name: str
    model: nn.Module
    forward: Callable[[nn.Module, Any, torch.device], dict[str, Tensor]]
    peer: bool = False


@dataclass
class Stage:
    """A stage's rows and the batch they all train on."""

    rows: list[Row]
    batch: Any
    images: int  # images per step
    image_size: int
    optim: OptimConfig
    config: str


def _channels_last(model: nn.Module, on: bool) -> nn.Module:
    return model.to(memory_format=torch.channels_last) if on else model


def _has_frozen(model: nn.Module) -> bool:
    return any(not p.requires_grad for p in model.parameters())


def vgg16_bn_features(width_mult: float = 1.0) -> nn.Sequential:
    """torchvision's VGG16-BN `features` (conv1_1 ... pool5), every width times `width_mult`, random init."""
    if width_mult == 1.0:
        return vgg16_bn(weights=None).features
    return vgg.make_layers([v if v == "M" else max(1, round(int(v) * width_mult)) for v in vgg.cfgs["D"]], True)


def vgg16_bn_classifier(num_classes: int, width_mult: float = 1.0) -> nn.Module:
    """torchvision `vgg16_bn(weights=None, num_classes)`; below width 1 its features and its FC head
    (25088 -> 4096 -> 4096 -> classes) scaled alike, in the layout and order of `VGG.forward`
    (features, 7x7 average pool, flatten, head) without building VGG's full-size head first."""
    if width_mult == 1.0:
        return vgg16_bn(weights=None, num_classes=num_classes)
    channels, hidden = max(1, round(512 * width_mult)), max(1, round(4096 * width_mult))
    head = nn.Sequential(
        nn.Linear(channels * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, num_classes),
    )  # fmt: skip
    return nn.Sequential(vgg16_bn_features(width_mult), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1), head)


class TripletPeer(nn.Module):
    """The embedder's peer: VGG16-BN features -> global average pool -> L2 norm, PML's TripletMarginLoss.

    Call: `(images (N, 3, S, S), labels (N,), triplets (3, T) row indices) -> {"triplet": scalar}`; the
    loss runs in float32 outside autocast, as `EmbedderWithLoss` runs ours.
    """

    def __init__(self, features: nn.Module, margin: float) -> None:
        super().__init__()
        self.features = features
        distance = distances.LpDistance(normalize_embeddings=True, p=2, power=1)  # Euclidean, as ours
        self.loss = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.MeanReducer())

    def forward(self, images: Tensor, labels: Tensor, triplets: Tensor) -> dict[str, Tensor]:
        emb = F.normalize(F.adaptive_avg_pool2d(self.features(images), 1).flatten(1), dim=1)
        with torch.autocast(images.device.type, enabled=False):
            return {"triplet": self.loss(emb.float(), labels, tuple(triplets))}


def detector_batch(n: int, size: int, device: torch.device, gen: torch.Generator) -> tuple[Tensor, list[dict]]:
    """Random uint8 images (n, 3, size, size) and 1-4 boxes per image, each 15-40% of the side, label 1."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    targets = []
    for _ in range(n):
        k = int(torch.randint(1, 5, (1,), generator=gen))
        xy = torch.rand(k, 2, generator=gen) * 0.6 * size  # x1, y1 <= 0.6 side, so x2, y2 <= side
        wh = (0.15 + 0.25 * torch.rand(k, 2, generator=gen)) * size
        boxes = torch.cat([xy, xy + wh], dim=1)
        targets.append({"boxes": boxes.to(device), "labels": torch.ones(k, dtype=torch.int64, device=device)})
    return images.to(device), targets


def _detector_stage(args: argparse.Namespace, device: torch.device, gen: torch.Generator) -> Stage:
    path = CONFIGS_DIR / CONFIGS[args.smoke]["detector"]
    run = load_config(DetectorRun, path)
    cfg = replace(run.model, weights="none", channels_last=args.channels_last)
    # The config freezes a random trunk here on purpose (timing only): silence build_detector's warning.
    logging.getLogger("imagesearch.detector.model").setLevel(logging.ERROR)
    n = args.batch or (2 if args.smoke else run.data.batch_size)
    torch.manual_seed(0)
    rows = [Row("ours (as configured)", build_detector(cfg), detector_forward)]
    if _has_frozen(rows[0].model):
        rows.append(Row("ours, all trainable", build_detector(replace(cfg, freeze_blocks=0)), detector_forward))
    peer = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=2)  # every layer trains without weights
    rows.append(Row("torchvision ssd300_vgg16 num_classes=2", _channels_last(peer, args.channels_last),
                    detector_forward, peer=True))  # fmt: skip
    batch = detector_batch(n, cfg.size, device, gen)
    return Stage(rows, batch, n, cfg.size, replace(run.optim, warmup_iters=0), str(path))


def _image_batch(n: int, size: int, device: torch.device, channels_last: bool, gen: torch.Generator) -> Tensor:
    images = torch.randn(n, 3, size, size, generator=gen).to(device)  # normalised RGB, ~N(0, 1)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def _classifier_stage(args: argparse.Namespace, device: torch.device, gen: torch.Generator) -> Stage:
    path = CONFIGS_DIR / CONFIGS[args.smoke]["classifier"]
    run = load_config(ClassifierRun, path)
    cfg = replace(run.model, weights="none")
    n = args.batch or (2 if args.smoke else run.data.batch_size)
    torch.manual_seed(0)
    rows = [Row("ours (as configured)", build_classifier(cfg), classifier_forward)]
    if _has_frozen(rows[0].model):
        rows.append(Row("ours, all trainable", build_classifier(replace(cfg, freeze_trunk=False)), classifier_forward))
    width = f" at width {cfg.width_mult:g}" if cfg.width_mult != 1.0 else ""
    peer = vgg16_bn_classifier(cfg.num_classes, cfg.width_mult)
    rows.append(Row(f"torchvision vgg16_bn{width}, {cfg.num_classes} classes", peer, classifier_forward, peer=True))
    for row in rows:
        _channels_last(row.model, args.channels_last)
    labels = torch.randint(0, cfg.num_classes, (n,), generator=gen).to(device)
    batch = (_image_batch(n, cfg.image_size, device, args.channels_last, gen), labels)
    return Stage(rows, batch, n, cfg.image_size, replace(run.optim, warmup_iters=0), str(path))


def triplet_batch(triplets: int, size: int, device: torch.device, channels_last: bool, gen: torch.Generator) -> tuple:
    """A `collate_triplets`-style batch: images (3T, 3, S, S) anchors, positives, negatives; labels (3T,)
    (anchor i and positive i share label i, negative i has T + i); triplets (3, T) row indices."""
    t = torch.arange(triplets)
    labels = torch.cat([t, t, t + triplets]).to(device)
    rows = torch.arange(3 * triplets).view(3, triplets).to(device)
    return _image_batch(3 * triplets, size, device, channels_last, gen), labels, rows


def _embedder_stage(args: argparse.Namespace, device: torch.device, gen: torch.Generator) -> Stage:
    path = CONFIGS_DIR / CONFIGS[args.smoke]["embedder"]
    run = load_config(EmbedderRun, path)
    classifier = replace(run.model.classifier, weights="none")
    cfg = replace(run.model, init_checkpoint="", classifier=classifier)  # random weights, the config's layout
    triplets = max(1, round(args.batch / 3)) if args.batch else (1 if args.smoke else run.data.batch_size)
    torch.manual_seed(0)

    def ours(train_parts: list[str]) -> nn.Module:
        embedder = build_embedder(replace(cfg, train_parts=train_parts))
        return EmbedderWithLoss(embedder, build_loss(run.loss, 2 * triplets, embedder.embed_dim))

    rows = [Row("ours (as configured)", ours(list(cfg.train_parts)), default_forward)]
    if _has_frozen(rows[0].model):
        rows.append(Row("ours, all trainable", ours(["trunk", "neck", "blocks", "pool", "proj"]), default_forward))
    width = f" at width {classifier.width_mult:g}" if classifier.width_mult != 1.0 else ""
    peer = TripletPeer(vgg16_bn_features(classifier.width_mult), run.loss.margin)
    rows.append(Row(f"torchvision vgg16_bn{width} features + avg pool, PML triplet", peer, default_forward, peer=True))
    for row in rows:
        _channels_last(row.model, args.channels_last)
    batch = triplet_batch(triplets, cfg.image_size, device, args.channels_last, gen)
    return Stage(rows, batch, 3 * triplets, cfg.image_size, replace(run.optim, warmup_iters=0), str(path))


BUILDERS = {"detector": _detector_stage, "classifier": _classifier_stage, "embedder": _embedder_stage}


def _step(row: Row, stage: Stage, device: torch.device, amp: str | None, state: dict[str, Any]) -> Callable[[], None]:
    """One engine training step of `row` on the stage's batch; records the loss and CUDA step peak in `state`."""
    row.model.to(device).train()
    params = [p for p in row.model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, stage.optim)
    scheduler = build_scheduler(optimizer, OptimConfig(schedule="constant"), 1, 1)
    dtype = AMP_DTYPES[AMP_CHOICES[amp]] if amp else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16" and device.type == "cuda")
    cuda = device.type == "cuda"
    state.update(loss=None, step_peak_bytes=0)

    def step() -> None:
        before = torch.cuda.memory_allocated(device) if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        out = train_one_epoch(row.model, [stage.batch], row.forward, optimizer, scheduler, scaler, device, 0,
                              amp=amp is not None, amp_dtype=dtype, grad_clip=stage.optim.grad_clip,
                              log_every=0, progress=False)  # fmt: skip
        state["loss"] = out["train/loss"]
        if cuda:
            peak = torch.cuda.max_memory_allocated(device) - before
            state["step_peak_bytes"] = max(state["step_peak_bytes"], peak)

    return step


def run_stage(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build the stage's rows, time them interleaved, and return the stage's JSON-ready report."""
    stage = BUILDERS[name](args, device, torch.Generator().manual_seed(0))
    states: dict[str, dict[str, Any]] = {row.name: {} for row in stage.rows}
    steps = {row.name: _step(row, stage, device, args.amp, states[row.name]) for row in stage.rows}
    times = _common.time_interleaved(steps, warmup=args.warmup, iters=args.iters, sync=_common.cuda_sync(device))
    rows = {}
    for row in stage.rows:
        median = statistics.median(times[row.name])
        rows[row.name] = {
            "peer": row.peer,
            "params": sum(p.numel() for p in row.model.parameters()),
            "trainable_params": sum(p.numel() for p in row.model.parameters() if p.requires_grad),
            "median_s": median,
            "min_s": min(times[row.name]),
            "times_s": times[row.name],
            "images_per_s": stage.images / median,
            "loss": states[row.name]["loss"],
            "step_peak_bytes": states[row.name]["step_peak_bytes"] if device.type == "cuda" else None,
        }
    peer = next(r.name for r in stage.rows if r.peer)
    ours = [r.name for r in stage.rows if not r.peer]
    report = {
        "config": str(Path(stage.config).relative_to(CONFIGS_DIR.parent)),
        "image_size": stage.image_size,
        "images_per_step": stage.images,
        "optimizer": stage.optim.name,
        "grad_clip": stage.optim.grad_clip,
        "peer": peer,
        "rows": rows,
        "ours_vs_peer": {r: rows[r]["images_per_s"] / rows[peer]["images_per_s"] for r in ours},
    }
    del stage, steps  # free this stage's models before the next one is built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, of " + ",".join(STAGES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--batch", type=int, default=0, help="images per step (0: the config's; 2 with --smoke)")
    parser.add_argument("--iters", type=int, default=None, help="timed steps per row (default 10; 3 with --smoke)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 with --smoke)")
    parser.add_argument("--amp", nargs="?", const="bf16", default=None, choices=sorted(AMP_CHOICES),
                        help="autocast: bf16 (the configs' choice; the default with a bare --amp) or fp16 + GradScaler")  # fmt: skip
    parser.add_argument("--channels-last", action="store_true", help="every row's model and images channels-last")
    parser.add_argument("--smoke", action="store_true", help="ours from configs/smoke/*.yaml (see the docstring)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON file (default benchmarks/results/{NAME}[_smoke]-<device>.json)"
    )
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        parser.error(f"--stages: unknown {unknown or 'none given'}; choose from {','.join(STAGES)}")
    args.stages = stages
    args.iters = args.iters if args.iters is not None else (3 if args.smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    if args.iters < 1 or args.warmup < 0 or args.batch < 0:
        parser.error("--iters must be >= 1, --warmup and --batch >= 0")
    return args


def _table_rows(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for stage, report in stages.items():
        for name, r in report["rows"].items():
            peak = r["step_peak_bytes"]
            out.append({"stage": stage, "row": name, "trainable_m": r["trainable_params"] / 1e6,
                        "params_m": r["params"] / 1e6, "median_s": r["median_s"], "images_per_s": r["images_per_s"],
                        "step_peak_mb": None if peak is None else peak / 2**20})  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and the ratios, write the JSON; returns the written payload."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wall = time.perf_counter()
    stages = {name: run_stage(name, args, device) for name in args.stages}
    payload = {
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": _common.machine_info(device),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _common.machine_info()["cpu"],
        "device_type": device.type,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "amp": args.amp,
        "channels_last": args.channels_last,
        # torch's defaults, which the training scripts keep; recorded since they move CUDA timings.
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "smoke": args.smoke,
        "iters": args.iters,
        "warmup": args.warmup,
        "stages": stages,
        "wall_s": time.perf_counter() - wall,
    }
    # A smoke run never overwrites a full run's file.
    out = args.out or (_common.result_path(f"{NAME}_smoke", device) if args.smoke else None)
    path = _common.write_result(NAME, device, payload, out)
    print(f"{device.type} ({payload['device']}), torch {payload['torch']}, {payload['threads']} threads, "
          f"amp {args.amp or 'off'}, channels_last {args.channels_last}, median of {args.iters} steps after "
          f"{args.warmup} warm-up{', SMOKE sizes' if args.smoke else ''}")  # fmt: skip
    print(_common.format_table(_table_rows(stages), COLUMNS))
    for stage, report in stages.items():
        ratios = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in report["ours_vs_peer"].items())
        print(f"{stage}: {report['images_per_step']} images of {report['image_size']} px per step; "
              f"images/s vs {report['peer']}: {ratios}")  # fmt: skip
    if args.smoke:
        print(
            "smoke: tiny models; the detector peer is full-size SSD300 (no width knob); ratios are not the full models'"
        )
    print(f"wall {payload['wall_s']:.1f}s; results in {path}")
    return payload


if __name__ == "__main__":
    main()
