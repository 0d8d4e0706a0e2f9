"""How cost grows with the split: seconds per video, peak memory and cache size from N videos up (issue 15).

    python benchmarks/scale.py --sizes 100 300 1000                  # both parts, on the CPU
    python benchmarks/scale.py --sizes 100 --part pipeline --device cuda
    python benchmarks/scale.py --part search --queries 100000 --gallery 200000 --dim 512

Part `pipeline`, per N: a synthetic split of N videos and ~3N items (`imagesearch.synthetic` renders
3N items, one video each, then every item but one in three loses its video: the real splits hold about
three items per video). Generated once under `--root` (default data/bench/scale/n<N>) and reused.
Small frames (136x240, 121 frames, annotated every 40th; 200 px product images): the point is growth.
Random-init smoke models (configs/smoke/detector.yaml and embedder.yaml, seed 8008, saved as
checkpoints) stand in for trained ones. Each stage runs in a fresh process, on fresh caches:
- `detector_data`: the detector's samples and frame cache (`detector.data.build_samples`);
- `crops`: the crop cache the embedder (no distractors) and the classifier (distractors) share;
- `detector_val`: one detector validation pass (`detector.train.evaluate_checkpoint`, smoke config);
- `embedder_val`: one embedder validation pass (`embedder.train.evaluate_run`, smoke config);
- `evaluate`: `evaluation.evaluate_split` with configs/eval/default.yaml (detector boxes, the embedder
  feature, report on).
Recorded per stage: wall seconds of the work (imports excluded) and per video, the process's peak
resident memory (ru_maxrss) and its resident memory before the work, the peak of its child processes
(decode workers), and the bytes and files the stage left on disk (its caches; `evaluate`: its outputs).

Part `search`: random unit vectors at full-split shapes (default Q = 100k queries, G = 200k gallery
rows, D = 512, ~5 gallery rows per label), each in a fresh process: `metrics` =
`metrics.embedding_retrieval_metrics` (validation's recall@1/5/20 and full mAP, float64, chunked);
`search` = `matching.index.BruteForceIndex` top-20 (float32, chunked). Seconds, peak resident memory
and the memory the inputs take.

Every stage also records its CPU seconds (user + system, its own and its finished children's): on a
shared machine the wall time follows the other users' load, the CPU time far less.

The JSON (`benchmarks/results/scale-<device>.json`, or `--out`; `--out -` prints it instead of writing a
file) holds every row, the goals of issue 15 (peak at the largest N / peak at the smallest; the spread
of seconds per video, wall and CPU), the machine, the load average and the command. A run of one part
keeps the other part's rows already in that file (`<part>_from` says which run made them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common
except ImportError:  # run as a script (python benchmarks/scale.py): its folder is on sys.path
    import _common  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
NAME = "scale"
SEED = 8008  # no training run uses this seed
SPLIT = {"frames": 121, "width": 136, "height": 240, "image_size": 200}
ITEMS_PER_VIDEO = 3
STAGES = ("detector_data", "crops", "detector_val", "embedder_val", "evaluate")
SEARCH_STAGES = ("metrics", "search")


def ensure_split(root: Path, videos: int, workers: int) -> Path:
    """The split of `videos` videos and ITEMS_PER_VIDEO x as many items under `root`, made once.

    `scale.json` in the split marks it complete and records how it was made; a split without it (or
    made otherwise) is generated again.
    """
    from imagesearch.synthetic import SyntheticConfig, generate_split

    items = ITEMS_PER_VIDEO * videos
    # Above 1000 items the generator's default id range (one thousand per seed) is too small: ids from the
    # seed's default offset upwards (unique within the split, which is all the benchmark needs).
    offset = None if items <= 1000 else (SEED % 1000) * 1000
    cfg = SyntheticConfig(**SPLIT, workers=workers, overwrite=True, id_offset=offset)  # type: ignore[arg-type]
    made = {
        "videos": videos,
        "items": items,
        "seed": SEED,
        "synthetic": {**asdict(cfg), "workers": 0},
    }
    stamp = root / "scale.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == made:
        return root
    generate_split(root, made["items"], SEED, cfg)
    # One video per item from the generator: keep the video of every third item only.
    items = sorted(p.name for p in (root / "image").iterdir())
    for n, item in enumerate(items):
        if n % ITEMS_PER_VIDEO:
            for path in (f"video/{item}.mp4", f"video_annotation/{item}.json", f"video_text/{item}.txt"):
                (root / path).unlink(missing_ok=True)
    stamp.write_text(json.dumps(made) + "\n", encoding="utf-8")
    return root


def ensure_models(folder: Path) -> dict[str, Path]:
    """Random-init smoke detector and embedder checkpoints (seed SEED), written once."""
    import torch

    from imagesearch.checkpoint import save_checkpoint
    from imagesearch.config import config_to_dict, load_config
    from imagesearch.detector.model import build_detector
    from imagesearch.detector.train import DetectorRun
    from imagesearch.embedder.model import build_embedder
    from imagesearch.embedder.train import EmbedderRun

    paths = {"detector": folder / "detector.pt", "embedder": folder / "embedder.pt"}
    for name, schema, build in (("detector", DetectorRun, build_detector), ("embedder", EmbedderRun, build_embedder)):
        if not paths[name].is_file():
            cfg = load_config(schema, REPO / f"configs/smoke/{name}.yaml")
            torch.manual_seed(SEED)
            model = build(cfg.model)  # type: ignore[operator]
            save_checkpoint(paths[name], {"model": model.state_dict(), "config": config_to_dict(cfg)})
    return paths


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) of everything under `path`; (0, 0) when it does not exist."""
    size = count = 0
    for folder, _, files in os.walk(path):
        for name in files:
            size += os.stat(os.path.join(folder, name)).st_size
            count += 1
    return size, count


# --- stages: each runs in its own process (`--stage`) and returns (figures, folders it wrote) ---------------


def _detector_data(args: argparse.Namespace, models: dict[str, Path]) -> tuple[dict, list[Path]]:
    from imagesearch.data.reader import load_split
    from imagesearch.detector.data import build_samples

    cache = args.work / "cache" / "detector_frames"
    samples = build_samples(load_split(args.split), cache, workers=1, progress=False)
    return {"samples": len(samples)}, [cache]


def _crops(args: argparse.Namespace, models: dict[str, Path]) -> tuple[dict, list[Path]]:
    from imagesearch.data.crops import extract_crops
    from imagesearch.data.reader import load_split

    split, cache = load_split(args.split), args.work / "cache" / "crops"
    counts = {}
    for distractors in (False, True):  # the embedder's view (cuts the cache), then the classifier's (reads it)
        _, records = extract_crops(split, cache, max_side=96, include_distractors=distractors, progress=False)
        counts["crops_with_distractors" if distractors else "crops"] = len(records)
    return counts, [cache]


def _smoke(schema: Any, name: str, args: argparse.Namespace, cache: Path) -> Any:
    from imagesearch.config import load_config

    overrides = [f"data.val_root={args.split}", f"data.cache_dir={cache}", f"train.device={args.device}"]
    return load_config(schema, REPO / f"configs/smoke/{name}.yaml", [*overrides, "train.progress=false"])


def _detector_val(args: argparse.Namespace, models: dict[str, Path]) -> tuple[dict, list[Path]]:
    from imagesearch.detector.train import DetectorRun, evaluate_checkpoint

    cache = args.work / "cache" / "detector_frames"
    return evaluate_checkpoint(_smoke(DetectorRun, "detector", args, cache), models["detector"]), [cache]


def _embedder_val(args: argparse.Namespace, models: dict[str, Path]) -> tuple[dict, list[Path]]:
    from imagesearch.embedder.train import EmbedderRun, evaluate_run

    cache = args.work / "cache" / "crops"
    return evaluate_run(_smoke(EmbedderRun, "embedder", args, cache), models["embedder"]), [cache]


def _evaluate(args: argparse.Namespace, models: dict[str, Path]) -> tuple[dict, list[Path]]:
    from imagesearch.config import load_config
    from imagesearch.evaluation.evaluate import EvalRun, evaluate_split

    work, device = args.work, args.device
    overrides = [
        f"data.split={args.split}", f"features.checkpoint={models['embedder']}",
        f"detector.checkpoint={models['detector']}", f"gallery.cache_dir={work / 'cache' / 'gallery'}",
        f"out_dir={work / 'eval'}", "progress=false", f"matcher.decode_workers={args.decode_workers}",
        f"features.device={device}", f"detector.device={device}", f"index.device={device}",
    ]  # fmt: skip
    m = evaluate_split(load_config(EvalRun, REPO / "configs/eval/default.yaml", overrides))
    figures = {"score": m["official"]["all"]["score"], "top1": m["topk"]["all"]["top1"], "gallery_rows": m["gallery"]["rows"]}  # fmt: skip
    return figures, [work / "cache" / "gallery", work / "eval"]


def _random_unit(n: int, dim: int, seed: int) -> Any:
    import torch

    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return x.div_(x.norm(dim=1, keepdim=True))  # in place: no second copy at the peak


def _search_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    gallery, queries = _random_unit(args.gallery, args.dim, SEED), _random_unit(args.queries, args.dim, SEED + 1)
    g_labels = np.arange(args.gallery) // 5  # ~5 gallery rows per item, as product images per item
    q_labels = np.random.default_rng(SEED).integers(0, g_labels[-1] + 1, size=args.queries)
    return queries, q_labels, gallery, g_labels


def _metrics(args: argparse.Namespace, queries: Any, q_labels: Any, gallery: Any, g_labels: Any) -> dict:
    from imagesearch.metrics.retrieval import embedding_retrieval_metrics

    return embedding_retrieval_metrics(queries, q_labels, gallery, g_labels, device=args.device)


def _search(args: argparse.Namespace, queries: Any, q_labels: Any, gallery: Any, g_labels: Any) -> dict:
    from imagesearch.matching.index import BruteForceIndex

    index = BruteForceIndex(device=args.device)
    index.add(gallery)
    _, found = index.search(queries, args.k)
    return {"k": args.k, "found": int((found >= 0).sum())}


PIPELINE = {"detector_data": _detector_data, "crops": _crops, "detector_val": _detector_val,
            "embedder_val": _embedder_val, "evaluate": _evaluate}  # fmt: skip


def run_stage(args: argparse.Namespace) -> dict[str, Any]:
    """One stage's seconds, figures and memory (in the child process, or in this one with --in-process).

    The peak is the process's resident peak during the work (VmHWM reset just before it, see
    `_common.MemoryProbe`; the lifetime ru_maxrss where the kernel cannot reset it). Imports come first:
    a constant cost that would weigh most on the smallest N.
    """
    import imagesearch.data.crops
    import imagesearch.detector.train
    import imagesearch.embedder.train
    import imagesearch.evaluation.evaluate  # noqa: F401

    sync = _common.cuda_sync(args.device) or (lambda: None)
    out: dict[str, Any] = {}
    cpu = _cpu_seconds()
    if args.stage in SEARCH_STAGES:
        inputs = _search_inputs(args)  # resident during the work: part of its peak
        with _common.MemoryProbe() as mem:
            start = time.perf_counter()
            out["figures"] = (_metrics if args.stage == "metrics" else _search)(args, *inputs)
            sync()
            out["seconds"] = time.perf_counter() - start
    else:
        models = {k: args.models / f"{k}.pt" for k in ("detector", "embedder")}
        with _common.MemoryProbe() as mem:
            start = time.perf_counter()
            out["figures"], folders = PIPELINE[args.stage](args, models)
            sync()
            out["seconds"] = time.perf_counter() - start
        sizes = [tree_size(f) for f in folders]
        out |= {"disk_bytes": sum(s for s, _ in sizes), "disk_files": sum(n for _, n in sizes)}
    out["cpu_s"] = _cpu_seconds() - cpu
    kb = 1024  # ru_maxrss is in KiB on Linux
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb
    out |= {"rss_before_bytes": mem.before, "peak_rss_bytes": lifetime if mem.peak_delta is None else mem.before + mem.peak_delta}  # fmt: skip
    # The largest child process ever: decode workers, but also one that `import torch` starts (~0.4 GB).
    out["children_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kb
    return out


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (decode workers).

    On a shared machine the wall time follows the other users' load (N = 100 took 290 s and 564 s of
    wall time in two runs here); the CPU time the work needs does not, or far less.
    """
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spawn(stage: str, args: argparse.Namespace, **paths: Path) -> dict[str, Any]:
    """Run one stage in a fresh Python process (so that its memory is its own) and read its result;
    with --in-process, in this one (tests: quicker, and the figures then include what this process holds)."""
    if args.in_process:
        return run_stage(argparse.Namespace(**{**vars(args), "stage": stage, **paths}))
    with tempfile.TemporaryDirectory(prefix="scale_") as tmp:
        result = Path(tmp) / "result.json"
        argv = [sys.executable, __file__, "--stage", stage, "--result", str(result), "--device", args.device]
        argv += [f"--{k}={v}" for k, v in paths.items()]
        argv += [f"--queries={args.queries}", f"--gallery={args.gallery}", f"--dim={args.dim}", f"--k={args.k}"]
        argv += [f"--decode-workers={args.decode_workers}"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"stage {stage} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(result.read_text(encoding="utf-8"))


def pipeline_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every stage at every N, in fresh processes and on fresh caches."""
    ensure_models(args.root / "models")
    rows = []
    for n in args.sizes:
        split = ensure_split(args.root / f"n{n}", n, args.workers)
        work = args.root / f"n{n}" / "work"
        shutil.rmtree(work, ignore_errors=True)  # fresh caches: every stage builds what it needs
        for stage in args.stages:
            _log(f"N={n}: {stage}")
            got = spawn(stage, args, split=split, work=work, models=args.root / "models")
            rows.append({"n": n, "stage": stage, "s_per_video": got["seconds"] / n, "cpu_s_per_video": got["cpu_s"] / n, **got})  # fmt: skip
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        # The rows so far, so an interrupted run keeps its finished sizes.
        _common.atomic_write_text(args.root / "partial.json", json.dumps(rows, indent=1) + "\n")
    return rows


def search_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for stage in SEARCH_STAGES:
        _log(f"search: {stage} at Q={args.queries}, G={args.gallery}, D={args.dim}")
        got = spawn(stage, args)
        rows.append({"stage": stage, "queries": args.queries, "gallery": args.gallery, "dim": args.dim, **got})
    return rows


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 15's goals per stage: peak memory at the largest N over the smallest (<= 1.25), and the
    spread of seconds per video across N ((max - min) / mean; within +-20% means <= 0.4), of wall and
    of CPU seconds."""

    def spread(values: list[float]) -> float:
        mean = sum(values) / len(values)
        return (max(values) - min(values)) / mean if mean else 0.0

    out = {}
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["n"])
        out[stage] = {
            "peak_ratio": mine[-1]["peak_rss_bytes"] / mine[0]["peak_rss_bytes"],
            "s_per_video_spread": spread([r["s_per_video"] for r in mine]),
            "cpu_s_per_video_spread": spread([r["cpu_s_per_video"] for r in mine]),
            "sizes": [r["n"] for r in mine],
        }
    return out


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["pipeline", "search", "all"], default="all")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000], help="videos per split")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--root", type=Path, default=REPO / "data" / "bench" / "scale", help="splits and models")
    p.add_argument("--workers", type=int, default=2, help="processes generating a split")
    p.add_argument("--keep-work", action="store_true", help="keep the caches and outputs of the last run")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--decode-workers", type=int, default=2, help="evaluate: matcher.decode_workers (the config's 2)")
    p.add_argument("--in-process", action="store_true", help="run the stages in this process (tests)")
    p.add_argument("--queries", type=int, default=100_000, help="search part: Q")
    p.add_argument("--gallery", type=int, default=200_000, help="search part: G")
    p.add_argument("--dim", type=int, default=512, help="search part: D")
    p.add_argument("--k", type=int, default=20, help="search part: neighbours per query")
    p.add_argument(
        "--out", default=None, help="JSON file (default benchmarks/results/scale-<device>.json); - prints it"
    )
    # Internal: the child process of one stage.
    for name in ("--stage", "--result", "--split", "--work", "--models"):
        p.add_argument(name, type=None if name == "--stage" else Path, help=argparse.SUPPRESS)
    return p


COLUMNS = [("n", "N", "d"), ("stage", "stage", "s"), ("seconds", "s", ".1f"), ("s_per_video", "s/video", ".3f"),
           ("cpu_s_per_video", "CPU s/video", ".3f"),
           ("peak_mb", "peak MB", ",.0f"), ("before_mb", "start MB", ",.0f"), ("children_mb", "children MB", ",.0f"),
           ("disk_mb", "disk MB", ",.1f"), ("disk_files", "files", ",d")]  # fmt: skip
SEARCH_COLUMNS = [("stage", "stage", "s"), ("queries", "Q", ",d"), ("gallery", "G", ",d"), ("dim", "D", "d"),
                  ("seconds", "s", ".1f"), ("cpu_s", "CPU s", ".1f"), ("peak_mb", "peak MB", ",.0f"),
                  ("before_mb", "with inputs MB", ",.0f")]  # fmt: skip


def _mb(row: dict[str, Any]) -> dict[str, Any]:
    mb = {"peak_mb": "peak_rss_bytes", "before_mb": "rss_before_bytes", "children_mb": "children_peak_rss_bytes",
          "disk_mb": "disk_bytes"}  # fmt: skip
    return {**row, **{k: row[v] / 2**20 for k, v in mb.items() if v in row}}


def _keep_other_part(report: dict[str, Any], args: argparse.Namespace) -> None:
    """A run of one part keeps the other part's rows already in the results file, with where they came from."""
    path = Path(args.out) if args.out is not None else _common.result_path(NAME, args.device)
    if args.part == "all" or args.out == "-" or not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    other = "search" if args.part == "pipeline" else "pipeline"
    if other in old:
        report[other] = old[other]
        if other == "pipeline":
            report["goals"] = old.get("goals")
        keys = ("created", "command", "load_average_before", "load_average_after", "machine")
        report[f"{other}_from"] = old.get(f"{other}_from") or {k: old.get(k) for k in keys}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.stage is not None:  # a child: one stage, result to a file
        args.result.write_text(json.dumps(run_stage(args)) + "\n", encoding="utf-8")
        return {}
    start = time.time()
    report: dict[str, Any] = {"machine": _common.machine_info(args.device), "load_average_before": os.getloadavg()}
    report["command"] = " ".join(["python", "benchmarks/scale.py", *(argv if argv is not None else sys.argv[1:])])
    report["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if v is not None}
    if args.part in ("pipeline", "all"):
        report["pipeline"] = pipeline_rows(args)
        report["goals"] = goals(report["pipeline"])
        print(_common.format_table([_mb(r) for r in report["pipeline"]], COLUMNS))
        for stage, g in report["goals"].items():
            print(f"{stage}: peak x{g['peak_ratio']:.2f} from N={g['sizes'][0]} to {g['sizes'][-1]}, s/video spread "
                  f"{100 * g['s_per_video_spread']:.0f}% (CPU s/video {100 * g['cpu_s_per_video_spread']:.0f}%)")  # fmt: skip
    if args.part in ("search", "all"):
        report["search"] = search_rows(args)
        print(_common.format_table([_mb(r) for r in report["search"]], SEARCH_COLUMNS))
    report["load_average_after"] = os.getloadavg()
    report["wall_s"] = time.time() - start
    _keep_other_part(report, args)
    if args.out == "-":
        print(json.dumps(report, indent=1))
    else:
        print(f"wrote {_common.write_result(NAME, args.device, report, args.out)}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
