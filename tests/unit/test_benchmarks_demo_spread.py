"""The demo-spread benchmark at a toy size: a stand-in pipeline, so only the benchmark's own logic runs
(commands, thread environment, shared splits and caches, rows, spreads, bounds, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import demo_spread

# (seed, threads) -> (score, top-1) that the stand-in pipeline reports
FIGURES = {(0, 1): (0.75, 0.8125), (1, 1): (0.80, 0.875), (0, 2): (0.70, 0.78125), (1, 2): (0.9, 0.90625)}


def _fake_pipeline(calls: list[tuple[list[str], dict[str, str]]]):
    def run(cmd: list[str], env: dict[str, str]) -> None:
        calls.append((cmd, env))
        args = dict(a.split("=", 1) for a in cmd[3:] if "=" in a)
        out = Path(args["out_dir"])
        if not (out / "splits").exists():  # the pipeline generates the splits when they are missing
            (out / "splits" / "test").mkdir(parents=True)
        if args.get("eval.enabled") == "false":  # the splits only
            return
        seed, threads = int(args["seed"]), int(env["OMP_NUM_THREADS"])
        score, top1 = FIGURES[(seed, threads)]
        level = {"f1": score}
        metrics = {"official": {"present": {"score": score, "s1": level, "s2": level, "s3": level, "num_videos": 32}},
                   "topk": {"present": {"top1": top1, "top5": 1.0}}, "detector_ap50": {"ap50": 0.9}}  # fmt: skip
        (out / "eval").mkdir(parents=True, exist_ok=True)
        (out / "eval" / "metrics.json").write_text(json.dumps(metrics))

    return run


def test_toy_run_rows_spreads_bounds_and_shared_splits(tmp_path: Path) -> None:
    calls: list = []
    out = tmp_path / "spread.json"
    argv = ["--seeds", "0", "1", "--threads", "1", "2", "--root", str(tmp_path / "root"), "--out", str(out),
            "detector.train.epochs=1"]  # fmt: skip
    report = demo_spread.main(argv, runner=_fake_pipeline(calls))
    assert [(r["threads"], r["seed"]) for r in report["runs"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    splits_call = calls.pop(0)[0]  # first the splits alone, under the root
    assert f"out_dir={tmp_path / 'root'}" in splits_call and "detector.enabled=false" in splits_call
    for (cmd, env), row in zip(calls, report["runs"], strict=True):
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(row["threads"])
        assert f"seed={row['seed']}" in cmd and cmd[-1] == "detector.train.epochs=1"
        assert f"cache_dir={tmp_path / 'root' / ('cache_t' + str(row['threads']))}" in cmd  # one cache per thread count
        assert (row["score"], row["top1"]) == FIGURES[(row["seed"], row["threads"])]
    # Every run's folder links to the splits under the root.
    assert (tmp_path / "root" / "splits" / "test").is_dir()
    assert all((Path(r["out_dir"]) / "splits").resolve() == (tmp_path / "root" / "splits").resolve() for r in report["runs"])
    one, two, both = (report["spread"][k] for k in ("threads=1", "threads=2", "all"))
    assert (one["worst_score"], one["worst_top1"], one["bounds_met"]) == (0.75, 0.8125, True)
    assert one["top1_spread"] == pytest.approx(0.0625)
    assert (two["worst_top1"], two["bounds_met"]) == (0.78125, False)  # top-1 below 0.8
    assert both["top1_spread"] == pytest.approx(0.90625 - 0.78125) and not both["bounds_met"]
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["benchmark"] == "demo_spread" and record["runs"] == json.loads(json.dumps(report["runs"]))
    assert record["command"].startswith("python benchmarks/demo_spread.py") and record["bounds"] == demo_spread.BOUNDS
    # --shared-cache: one cache for every thread count.
    shared_calls: list = []
    shared = demo_spread.main([*argv[:-3], "--out", str(tmp_path / "shared.json"), "--shared-cache"],
                              runner=_fake_pipeline(shared_calls))  # fmt: skip
    assert {cmd[4] for cmd, _ in shared_calls[1:]} == {f"cache_dir={tmp_path / 'root' / 'cache'}"}
    assert len(shared["runs"]) == 4
