"""The end-to-end benchmark at a toy size: both rows run, their answers agree, the JSON holds the split of times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import end_to_end

TOY = ["--items", "2", "--frames", "41", "--width-px", "136", "--height-px", "240", "--image-px", "200"]
TOY += ["--num-frames", "3", "--width", "0.125", "--crop-px", "32", "--det-batch", "4", "--decode-workers", "1"]
TOY += ["--repeat", "1", "--warmup", "0"]


def test_toy_run_writes_both_rows_with_the_same_answers(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    report = end_to_end.main([*TOY, "--naive-crops", "roi_align", "--out", str(out)])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["benchmark"] == "end_to_end" and record["results"] == json.loads(json.dumps(report["results"]))
    rows = {r["pipeline"]: r for r in record["results"]}
    assert set(rows) == {"batched", "naive"}
    for row in rows.values():
        assert row["videos"] == 2 and row["videos_per_s"] == pytest.approx(2 / row["wall_s"])
        stages = [row[f"{s}_s"] for s in ("decode", "detect", "embed", "search")]
        assert all(t >= 0 for t in stages) and sum(stages) <= row["wall_s"] * 1.001
        assert row["detect_s"] > 0 and row["embed_s"] > 0
    # Same detector, model and crop path, one box at a time or batched: every query finds the same item.
    agree = record["top1_agreement"]
    assert agree["queries"] > 0 and agree["same"] == agree["queries"]
    assert record["speedup"] == pytest.approx(rows["batched"]["videos_per_s"] / rows["naive"]["videos_per_s"])
    assert record["machine"]["cpu_cores"] >= 1 and record["args"]["decode_workers"] == 1
