"""Detector inference throughput: our `Detector` against torchvision's `ssd300_vgg16` on the same frames.

    python benchmarks/detector_throughput.py --device cpu --batch 8 --iters 5 --out bench.json

Both models have random weights (nothing is downloaded) and start from the same batch of RGB uint8
540x960 (portrait, W x H) numpy frames, as the matcher receives them, and end with detections on the
host: ours through `Detector.detect` (one batched resize + normalise, then the SSD's backbone, head
and post-processing), torchvision's through `model(list of float tensors)` (per-image
GeneralizedRCNNTransform). A second row of ours keeps the default (contiguous) memory format, and
a second torchvision row builds it with `num_classes=2`, our class count, to separate the
post-processing cost of its 91 COCO classes. Reported: the median of `--iters` timed calls after
`--warmup` untimed ones (the rows take turns), as images per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import ssd300_vgg16

from imagesearch.detector.inference import Detector
from imagesearch.detector.model import DetectorModelConfig, build_detector


def _time_interleaved(rows: dict[str, Callable[[], Any]], device: torch.device, warmup: int, iters: int) -> dict:
    """Seconds per call of each row; the rows take turns (rotating the order), so that a load change on
    a shared machine hits every row alike rather than whichever runs at that moment."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    for i in range(warmup + iters):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            rows[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def _torchvision_call(model: torch.nn.Module, frames: list[np.ndarray], device: torch.device) -> Callable[[], Any]:
    @torch.inference_mode()
    def run() -> list[dict[str, np.ndarray]]:
        images = [torch.from_numpy(f).to(device).permute(2, 0, 1).float().div_(255.0) for f in frames]
        return [{k: v.cpu().numpy() for k, v in out.items()} for out in model(images)]

    return run


def run_benchmark(device: str, batch: int, iters: int, warmup: int, amp: bool) -> dict[str, Any]:
    """Time every row (see the module docstring); returns the JSON-ready report."""
    dev = torch.device(device)
    torch.manual_seed(0)
    frames = [np.random.default_rng(i).integers(0, 256, (960, 540, 3), dtype=np.uint8) for i in range(batch)]
    ours = Detector(build_detector(DetectorModelConfig(size=300)), device=dev, amp=amp)
    plain = Detector(build_detector(DetectorModelConfig(size=300, channels_last=False)), device=dev, amp=amp)
    rows = {
        "ours (Detector.detect)": lambda: ours.detect(frames),
        "ours, channels_last=False": lambda: plain.detect(frames),
    }
    for name, classes in (("torchvision ssd300_vgg16", 91), ("torchvision ssd300_vgg16 num_classes=2", 2)):
        model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=classes).eval().to(dev)
        rows[name] = _torchvision_call(model, frames, dev)
    results = {}
    for name, times in _time_interleaved(rows, dev, warmup, iters).items():
        median = statistics.median(times)
        results[name] = {"median_s": median, "images_per_s": batch / median, "times_s": times}
    base = results["torchvision ssd300_vgg16"]["images_per_s"]
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "device_type": dev.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "frame_hw": [960, 540],
        "iters": iters,
        "warmup": warmup,
        "amp": amp,
        "results": results,
        "speedup_vs_torchvision": results["ours (Detector.detect)"]["images_per_s"] / base,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--batch", type=int, default=8, help="frames per call")
    parser.add_argument("--iters", type=int, default=5, help="timed calls per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--amp", action="store_true", help="float16 autocast for ours (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args.device, args.batch, args.iters, args.warmup, args.amp)
    print(f"{report['device_type']} ({report['device']}), batch {args.batch} of 960x540 frames, "
          f"median of {args.iters} after {args.warmup} warm-up, torch {report['torch']}, {report['threads']} threads")  # fmt: skip
    print(f"{'model':42s} {'median s':>9s} {'images/s':>9s}")
    for name, r in report["results"].items():
        print(f"{name:42s} {r['median_s']:9.3f} {r['images_per_s']:9.2f}")
    print(f"ours / torchvision ssd300_vgg16: {report['speedup_vs_torchvision']:.2f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.out)  # atomic
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
