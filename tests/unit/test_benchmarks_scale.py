"""The scale benchmark at a toy size: splits of N videos and 3N items made once, rows per stage, goals, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scale
from imagesearch.data.reader import load_split

TOY = ["--part", "all", "--in-process", "--workers", "1", "--stages", "detector_data", "crops", "embedder_val"]
TOY += ["--queries", "40", "--gallery", "90", "--dim", "8", "--k", "5", "--decode-workers", "0"]


def test_toy_run_rows_goals_and_reused_splits(tmp_path: Path) -> None:
    out, root = tmp_path / "scale.json", tmp_path / "bench"
    report = scale.main([*TOY, "--sizes", "1", "2", "--root", str(root), "--out", str(out), "--keep-work"])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["benchmark"] == "scale" and record["pipeline"] == json.loads(json.dumps(report["pipeline"]))
    for n in (1, 2):  # N videos, 3N items: every third item keeps its video
        split = load_split(root / f"n{n}")
        assert len(split.items) == 3 * n and sum(v.present for v in split.videos.values()) == n
    rows = {(r["n"], r["stage"]): r for r in record["pipeline"]}
    assert set(rows) == {(n, s) for n in (1, 2) for s in ("detector_data", "crops", "embedder_val")}
    for (n, _), row in rows.items():
        assert row["seconds"] > 0 and row["s_per_video"] == pytest.approx(row["seconds"] / n)
        assert row["cpu_s"] > 0 and row["cpu_s_per_video"] == pytest.approx(row["cpu_s"] / n)
        assert row["peak_rss_bytes"] >= row["rss_before_bytes"] > 0
    # The last N's caches are kept (--keep-work): the disk figures are what is on disk.
    frames = root / "n2" / "work" / "cache" / "detector_frames"
    assert rows[(2, "detector_data")]["disk_bytes"] == sum(p.stat().st_size for p in frames.rglob("*") if p.is_file())
    crops = rows[(2, "crops")]["figures"]
    assert crops["crops_with_distractors"] > crops["crops"] > 0
    assert set(rows[(2, "embedder_val")]["figures"]) == {"val/recall@1", "val/recall@5", "val/recall@20", "val/map"}
    assert set(record["goals"]) == {"detector_data", "crops", "embedder_val"}
    search = {r["stage"]: r for r in record["search"]}
    assert search["metrics"]["figures"]["recall@20"] >= search["metrics"]["figures"]["recall@1"]
    assert search["search"]["figures"] == {"k": 5, "found": 40 * 5}
    assert record["command"].startswith("python benchmarks/scale.py") and len(record["load_average_before"]) == 3
    # A second run reuses the splits (made once) and, running one part, keeps the other part's rows.
    stamp = (root / "n1" / "scale.json").stat().st_mtime_ns
    args = ["--part", "pipeline", "--stages", "crops", "--sizes", "1", "--root", str(root), "--out", str(out)]
    again = scale.main([*TOY, *args])
    assert (root / "n1" / "scale.json").stat().st_mtime_ns == stamp
    assert [r["stage"] for r in again["pipeline"]] == ["crops"] and again["search"] == record["search"]
    assert again["search_from"]["created"] == record["created"]


def test_goals_by_hand() -> None:
    rows = [
        {"n": 100, "stage": "a", "s_per_video": 1.0, "cpu_s_per_video": 2.0, "peak_rss_bytes": 400},
        {"n": 1000, "stage": "a", "s_per_video": 1.5, "cpu_s_per_video": 2.0, "peak_rss_bytes": 600},
        {"n": 300, "stage": "a", "s_per_video": 0.5, "cpu_s_per_video": 2.0, "peak_rss_bytes": 500},
    ]
    # peak 600 / 400; s/video (1.5 - 0.5) / mean 1.0; CPU s/video all equal
    expected = {"peak_ratio": 1.5, "s_per_video_spread": 1.0, "cpu_s_per_video_spread": 0.0, "sizes": [100, 300, 1000]}
    assert scale.goals(rows) == {"a": expected}
