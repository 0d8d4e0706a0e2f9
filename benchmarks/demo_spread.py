"""How much `make demo`'s score moves with the training seed and the CPU thread count (issue 17).

    python benchmarks/demo_spread.py                                  # seeds 0 1 2, with 1 and 2 threads: 6 runs
    python benchmarks/demo_spread.py --seeds 0 1 2 --threads 2 --root data/bench/demo_spread

Each run is `scripts/run_pipeline.py CONFIG out_dir=<root>/t<T>_seed<S> seed=<S>` in a fresh process
whose environment sets OMP_NUM_THREADS = MKL_NUM_THREADS = T (torch takes its thread count from it), so
it trains the demo's stages with training seed S and evaluates them on the test split. What does not
depend on the seed is made once and shared: the synthetic splits (generated first under `<root>/splits`
by the pipeline with every stage off, then linked into every run's folder) and, per thread count, the cache (`cache_dir`:
decoded frames and the detector's cached trunk views, whose augmentations have their own fixed seed in
the demo, `detector.data.views_seed`); each thread count computes its own, so that the runs with 1 and 2
threads share no float result (`--shared-cache`: one cache for all, so the thread count moves only the
training of the detector's head and the evaluation). Runs already complete are skipped by the pipeline itself (stage.json),
so an interrupted benchmark can be restarted.

Printed and saved (`benchmarks/results/demo_spread-cpu.json`, or `--out`): per run the weighted score
and top-1 on the test videos (present), F1 S1/S2/S3, the detector's AP@0.5 on the sampled frames, wall
and CPU seconds; per thread count and over all runs the worst score and top-1 and the max - min spread;
the issue's bounds (worst top-1 >= 0.8, worst score >= 0.7, top-1 spread <= 0.1) and whether they hold;
the machine and the load average before and after (wall times follow other users of a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common
except ImportError:  # run as a script (python benchmarks/demo_spread.py): its folder is on sys.path
    import _common  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
NAME = "demo_spread"
BOUNDS = {"worst_top1": 0.8, "worst_score": 0.7, "max_top1_spread": 0.1}

Runner = Callable[[list[str], dict[str, str]], None]


def run_command(config: str, out_dir: Path, cache_dir: Path, seed: int, extra: Sequence[str]) -> list[str]:
    """The pipeline command of one run."""
    return [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), config, f"out_dir={out_dir}",
            f"cache_dir={cache_dir}", f"seed={seed}", *extra]  # fmt: skip


def thread_env(threads: int) -> dict[str, str]:
    """The child's environment: this one with the thread count of every math library torch may use."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _subprocess(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, cwd=REPO, check=True)


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The pipeline with every stage off: it only generates the synthetic splits, under its out_dir.
SPLITS_ONLY = ["detector.enabled=false", "classifier.enabled=false", "embedder.enabled=false", "eval.enabled=false",
               "fusion.tune=false"]  # fmt: skip


def make_splits(args: argparse.Namespace, runner: Runner) -> Path:
    """The config's synthetic splits, generated once under `<root>/splits` (skipped when their stamps match)."""
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), args.config, f"out_dir={args.root}",
           *args.overrides, *SPLITS_ONLY]  # fmt: skip
    runner(cmd, thread_env(max(args.threads)))
    return args.root / "splits"


def _link_splits(root: Path, out_dir: Path) -> None:
    """Every run reads the same split files (one resolved path: the trunk-view cache is keyed by it); the
    pipeline skips splits whose stamp matches."""
    shared, mine = root / "splits", out_dir / "splits"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not mine.exists():
        mine.symlink_to(shared.resolve(), target_is_directory=True)


def one_run(args: argparse.Namespace, seed: int, threads: int, runner: Runner) -> dict[str, Any]:
    """Run (or find complete) the demo with `seed` and `threads`; its row of figures."""
    root: Path = args.root
    out_dir = root / f"t{threads}_seed{seed}"
    _link_splits(root, out_dir)
    cache = root / ("cache" if args.shared_cache else f"cache_t{threads}")
    cmd = run_command(args.config, out_dir, cache, seed, args.overrides)
    start, cpu = time.time(), _cpu_children()
    runner(cmd, thread_env(threads))
    wall, cpu = time.time() - start, _cpu_children() - cpu
    metrics = json.loads((out_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    present = metrics["official"]["present"]
    topk = metrics["topk"]["present"] or {}
    det = metrics.get("detector_ap50") or {}
    return {
        "seed": seed, "threads": threads, "score": present["score"], "top1": topk.get("top1", 0.0),
        "top5": topk.get("top5", 0.0), "s1_f1": present["s1"]["f1"], "s2_f1": present["s2"]["f1"],
        "s3_f1": present["s3"]["f1"], "videos": present["num_videos"], "detector_ap50": det.get("ap50"),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "out_dir": str(out_dir),
    }  # fmt: skip


def spread(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Worst and max - min of score and top-1 over `rows`, and whether the issue's bounds hold.

    >>> s = spread([{"score": 0.75, "top1": 0.8}, {"score": 0.9, "top1": 0.875}])
    >>> (s["worst_score"], s["worst_top1"], round(s["top1_spread"], 3), s["bounds_met"])
    (0.75, 0.8, 0.075, True)
    """
    scores, top1 = [r["score"] for r in rows], [r["top1"] for r in rows]
    out = {"runs": len(rows), "worst_score": min(scores), "best_score": max(scores),
           "score_spread": max(scores) - min(scores), "worst_top1": min(top1), "best_top1": max(top1),
           "top1_spread": max(top1) - min(top1)}  # fmt: skip
    out["bounds_met"] = bool(
        out["worst_top1"] >= BOUNDS["worst_top1"]
        and out["worst_score"] >= BOUNDS["worst_score"]
        and out["top1_spread"] <= BOUNDS["max_top1_spread"]
    )
    return out


COLUMNS = [("threads", "threads", "d"), ("seed", "seed", "d"), ("score", "score", ".4f"), ("top1", "top-1", ".3f"),
           ("top5", "top-5", ".3f"), ("s3_f1", "F1 S3", ".3f"), ("videos", "videos", "d"),
           ("wall_s", "wall s", ".0f"), ("cpu_s", "CPU s", ".0f")]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/pipeline/demo.yaml", help="the pipeline config (the demo's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (pipeline seed=)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts (OMP_NUM_THREADS)")
    p.add_argument("--root", type=Path, default=REPO / "data" / "bench" / "demo_spread", help="runs, splits, caches")
    p.add_argument("--shared-cache", action="store_true",
                   help="one cache for every thread count (the trunk views computed once, by the first run)")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/demo_spread-cpu.json)")
    p.add_argument("overrides", nargs="*", help="extra pipeline overrides for every run, e.g. detector.train.epochs=2")
    return p


def main(argv: Sequence[str] | None = None, runner: Runner = _subprocess) -> dict[str, Any]:
    """Run every (threads, seed), print the table and the spreads, write the JSON; returns the report."""
    args = _parser().parse_args(argv)
    start = time.time()
    report: dict[str, Any] = {"machine": _common.machine_info("cpu"), "load_average_before": os.getloadavg()}
    report["command"] = " ".join(["python", "benchmarks/demo_spread.py", *(argv if argv is not None else sys.argv[1:])])
    report["bounds"] = BOUNDS
    start_splits = time.time()
    make_splits(args, runner)
    report["splits_s"] = round(time.time() - start_splits, 1)
    rows = [one_run(args, s, t, runner) for t in args.threads for s in args.seeds]
    report["runs"] = rows
    report["spread"] = {f"threads={t}": spread([r for r in rows if r["threads"] == t]) for t in args.threads}
    report["spread"]["all"] = spread(rows)
    report["load_average_after"] = os.getloadavg()
    report["wall_s"] = round(time.time() - start, 1)
    print(_common.format_table(rows, COLUMNS))
    for name, s in report["spread"].items():
        print(f"{name}: score {s['worst_score']:.4f}..{s['best_score']:.4f}, top-1 {s['worst_top1']:.3f}.."
              f"{s['best_top1']:.3f} (spread {s['top1_spread']:.3f}); bounds {'met' if s['bounds_met'] else 'NOT met'}")
    path = _common.write_result(NAME, "cpu", report, args.out)
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
