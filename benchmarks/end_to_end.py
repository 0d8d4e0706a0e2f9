"""End-to-end query throughput of evaluate_top20's matcher: the batched pipeline against a naive loop (issue 7).

    python benchmarks/end_to_end.py --items 16 --device cpu --decode-workers 2 --repeat 3

On one synthetic split (`imagesearch.synthetic.generate_split`, seed 7007, used by nothing that is
trained; or `--split PATH`), with a random-weight smoke detector (the model section of
configs/smoke/detector.yaml) and a random-weight VGG16 feature (`features.kind: imagenet_vgg16`,
`weights: none`, `--width` of the channels), both rows query every video against the same annotated
gallery and time, per video set:
- `batched`: `Matcher.run`: frames decoded ahead in `--decode-workers` processes, frames of
  consecutive videos in detector batches of `--det-batch`, every box of a group of videos cut on the
  device by one roi_align call per feature batch, one index search per group;
- `naive`: per video `read_frames`, then one frame at a time through the detector, one box at a time
  through `cut_crop` and the feature model, one query at a time through the index (the same
  detection post-processing and index).
Reported per row: videos/s (the median run of `--repeat`, the lower one for an even count; the rows
take turns so that load changes hit both alike), that run's wall seconds split into decode / detect /
embed / search (the rest, "other", is bookkeeping), the peak resident memory of this process during
a run and what a run added to it (decode workers are separate processes, not counted), and for how
many queries (video, frame, box) both rows find the same top-1 gallery item (by default the rows cut
crops differently, roi_align against cut_crop, so a few may differ; `--naive-crops roi_align` makes
the naive row cut by roi_align too, one box at a time, and then every answer must agree).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

try:
    from benchmarks import _common
except ImportError:  # run as a script (python benchmarks/end_to_end.py): its folder is on sys.path
    import _common  # type: ignore[no-redef]
from imagesearch.config import config_from_dict
from imagesearch.data.crops import cut_crop
from imagesearch.data.prefetch import decode_video
from imagesearch.data.reader import load_split
from imagesearch.data.records import Split
from imagesearch.detector.inference import DetectionConfig, Detector
from imagesearch.detector.model import DetectorModelConfig, build_detector
from imagesearch.evaluation.models import build_extractor
from imagesearch.features.extract import CropFeatures, FeatureConfig
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from imagesearch.matching.matcher import STAGES, Matcher, MatcherConfig
from imagesearch.synthetic import SyntheticConfig, generate_split

REPO = Path(__file__).resolve().parents[1]
SEED = 7007  # no training run uses this seed


Key = tuple[str, int, tuple[float, ...]]  # (video, frame index, rounded box): one query


def _key(video_id: str, frame_index: int, box: Sequence[float]) -> Key:
    return video_id, frame_index, tuple(round(float(v), 1) for v in box)


def _naive(matcher: Matcher, split: Split) -> tuple[dict[str, float], dict[Key, str]]:
    """The naive loop over every video; returns (seconds per stage, query -> top-1 gallery item)."""
    cfg, ex = matcher.cfg, matcher.extractor
    assert matcher.detector is not None
    times, top1 = dict.fromkeys(STAGES, 0.0), {}
    for position, video in enumerate(split.videos.values()):
        t0 = time.perf_counter()
        got = decode_video(position, video, matcher.plan)  # the sequential decode: read_frames, one video
        if got.status != "ok":
            continue
        t1 = time.perf_counter()
        boxes = []
        for i, frame in zip(got.indices, got.frame_list(), strict=True):
            boxes += [(i, frame, b) for b in matcher.detector.detect([frame])[0]["boxes"]]  # post-processed by the detector
        t2 = time.perf_counter()
        if ex.crop_path == "cpu":  # the matcher before batching: cut_crop and a forward pass per box
            queries = [ex([cut_crop(f, b, ex.margin, ex.max_side)]) for _, f, b in boxes]
        else:  # the same per box, but cut by roi_align (checks that batching changes no answer)
            queries = [ex.fuse(ex.box_parts([f], np.zeros(1, np.int64), b[None], ex.margin, ex.max_side, ex.needed_parts)) for _, f, b in boxes]  # fmt: skip
        t3 = time.perf_counter()
        rows = [matcher.index.search(q, cfg.k)[1][0] for q in queries]
        t4 = time.perf_counter()
        for (i, _, b), r in zip(boxes, rows, strict=True):
            top1[_key(video.video_id, i, b)] = matcher.gallery.records[int(r[0])].item_id
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[stage] += dt
    return times, top1


def _batched(matcher: Matcher, split: Split) -> tuple[dict[str, float], dict[Key, str]]:
    traces = matcher.run(split, progress=False)
    top1 = {_key(t.video_id, q.frame_index, q.box): q.neighbours[0].item_id for t in traces for q in t.queries if q.neighbours}  # fmt: skip
    return dict(matcher.timings), top1


def _split(args: argparse.Namespace, tmp: Path) -> Split:
    if args.split is not None:
        return load_split(args.split)
    cfg = SyntheticConfig(frames=args.frames, width=args.width_px, height=args.height_px, image_size=args.image_px)
    return load_split(generate_split(tmp / "split", args.items, SEED, cfg))


def _parts(args: argparse.Namespace, split: Split) -> tuple[Matcher, Matcher]:
    torch.manual_seed(0)
    model_cfg = yaml.safe_load((REPO / "configs/smoke/detector.yaml").read_text(encoding="utf-8"))["model"]
    detector = Detector(
        build_detector(config_from_dict(DetectorModelConfig, model_cfg)), device=args.device, amp=args.amp,
        post=DetectionConfig(min_score=args.min_score),
    )  # fmt: skip
    features = FeatureConfig(
        weights="none", width_mult=args.width, image_size=args.crop_px, batch_size=args.feature_batch,
        device=args.device, amp="bf16" if args.amp else "none",
    )  # fmt: skip
    extractor = build_extractor(features)
    gallery = build_gallery(split, extractor, GalleryConfig(boxes="annotated"), use_cache=False, progress=False)
    common = {"num_frames": args.num_frames, "frame_align": 0}
    batched = Matcher(gallery, extractor, MatcherConfig(decode_workers=args.decode_workers, **common), detector, det_batch=args.det_batch)  # type: ignore[arg-type]
    # The same model (and random weights) as the batched row and the gallery; only the crop path may differ.
    naive_ex = CropFeatures(extractor.global_fn, replace(features, crops=args.naive_crops), extractor.files)
    naive = Matcher(gallery, naive_ex, MatcherConfig(**common), detector, det_batch=args.det_batch)  # type: ignore[arg-type]
    return batched, naive


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build the split and models, time both rows in turns; returns the JSON-ready report."""
    with tempfile.TemporaryDirectory(prefix="e2e_") as tmp:
        split = _split(args, Path(tmp))
        n_videos = sum(v.present for v in split.videos.values())
        batched, naive = _parts(args, split)
        rows: dict[str, Any] = {"batched": (lambda: _batched(batched, split)), "naive": (lambda: _naive(naive, split))}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
        sync = _common.cuda_sync(args.device) or (lambda: None)
        for i in range(args.warmup + args.repeat):
            for name in list(rows)[i % 2 :] + list(rows)[: i % 2]:  # take turns
                with _common.MemoryProbe() as mem:
                    start = time.perf_counter()
                    stages, top1 = rows[name]()
                    sync()
                    wall = time.perf_counter() - start
                if i >= args.warmup:
                    peak = None if mem.peak_delta is None else mem.before + mem.peak_delta
                    runs[name].append({"wall_s": wall, "stages_s": stages, "top1": top1, "peak_rss_bytes": peak, **mem.as_dict()})  # fmt: skip
    results = []
    for name, timed in runs.items():
        # median_low is one of the runs, so its stage split adds up to its own wall time.
        median = statistics.median_low(r["wall_s"] for r in timed)
        mid = next(r for r in timed if r["wall_s"] == median)
        peaks = [r["peak_rss_delta_bytes"] for r in timed if r["peak_rss_delta_bytes"] is not None]
        absolute = [r["peak_rss_bytes"] for r in timed if r["peak_rss_bytes"] is not None]
        row = {"pipeline": name, "videos": n_videos, "videos_per_s": n_videos / median, "wall_s": median}
        row |= {f"{k}_s": v for k, v in mid["stages_s"].items()}
        row["other_s"] = max(0.0, median - sum(mid["stages_s"].values()))
        row["peak_rss_delta_mb"] = max(peaks) / 2**20 if peaks else None
        row["peak_rss_mb"] = max(absolute) / 2**20 if absolute else None
        row["times_s"] = [r["wall_s"] for r in timed]
        results.append(row)
    a, b = runs["batched"][-1]["top1"], runs["naive"][-1]["top1"]
    agree = sum(a.get(q) == b.get(q) for q in set(a) | set(b))
    return {
        "machine": _common.machine_info(args.device),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "speedup": results[0]["videos_per_s"] / results[1]["videos_per_s"],
        "top1_agreement": {"same": agree, "queries": len(set(a) | set(b))},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", type=Path, default=None, help="an existing split (default: generate one)")
    p.add_argument("--items", type=int, default=16, help="generated split: items (= videos)")
    p.add_argument("--frames", type=int, default=121, help="generated split: frames per video")
    p.add_argument("--width-px", type=int, default=270, help="generated split: video width")
    p.add_argument("--height-px", type=int, default=480, help="generated split: video height")
    p.add_argument("--image-px", type=int, default=400, help="generated split: product image side")
    p.add_argument("--num-frames", type=int, default=10, help="frames sampled per video")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--amp", action="store_true", help="autocast on CUDA (detector fp16, features bf16)")
    p.add_argument("--width", type=float, default=0.25, help="VGG16 width multiplier of the random feature")
    p.add_argument("--crop-px", type=int, default=112, help="feature input side")
    p.add_argument("--feature-batch", type=int, default=64, help="crops per feature forward pass (batched row)")
    p.add_argument("--det-batch", type=int, default=32, help="frames per detector pass (batched row)")
    p.add_argument("--min-score", type=float, default=0.0, help="detection score threshold (random weights)")
    p.add_argument("--naive-crops", default="cpu", choices=["cpu", "roi_align"], help="crop path of the naive row")
    p.add_argument("--decode-workers", type=int, default=2, help="decode processes (batched row)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per row")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per row first")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON file (default benchmarks/results/end_to_end-<device>.json)"
    )
    return p


COLUMNS = [("pipeline", "pipeline", "s"), ("videos_per_s", "videos/s", ".2f"), ("wall_s", "wall s", ".2f")]
COLUMNS += [(f"{s}_s", f"{s} s", ".2f") for s in (*STAGES, "other")]
COLUMNS += [("peak_rss_mb", "peak RSS MB", ".0f"), ("peak_rss_delta_mb", "peak +RSS MB", ".0f")]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args)
    print(f"{args.device}: {report['results'][0]['videos']} videos, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(_common.format_table(report["results"], COLUMNS))
    agree = report["top1_agreement"]
    print(
        f"batched / naive: {report['speedup']:.2f}x; same top-1 item for {agree['same']} of {agree['queries']} queries"
    )
    path = _common.write_result("end_to_end", args.device, report, args.out)
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
