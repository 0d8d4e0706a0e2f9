"""Evaluation on the real sample with annotated boxes and a tiny random-init feature (fast, no weights)."""

from __future__ import annotations

import re
from pathlib import Path

from imagesearch.config import load_config
from imagesearch.evaluation import EvalRun, evaluate_split
from imagesearch.metrics.results import parse_results

REPO = Path(__file__).resolve().parents[2]


def test_sample_gt_boxes_tiny_feature(tianchi_sample: Path, tmp_path: Path):
    overrides = [
        f"data.split={tianchi_sample}", f"out_dir={tmp_path / 'eval'}", f"gallery.cache_dir={tmp_path / 'cache'}",
        "features.weights=none", "features.width_mult=0.125", "features.image_size=64", "features.device=cpu",
        "progress=false",
    ]  # fmt: skip
    cfg = load_config(EvalRun, REPO / "configs/eval/sample_imagenet.yaml", overrides)
    metrics = evaluate_split(cfg)
    videos = metrics["videos"]
    assert (videos["annotated"], videos["evaluated"], videos["missing"]) == (10, 3, 7)
    assert videos["missing_ids"] == ["000006", "000044", "000054", "000077", "000078", "000083", "000103"]
    results = parse_results(tmp_path / "eval" / "result.json")
    assert set(results) == {"000117", "000134", "000165"}  # gt boxes: each present video gets a prediction
    assert all(len(r.ranked_items or []) >= 5 for r in results.values())
    assert metrics["crop_recall"]["num_crops"] == 30  # 3 videos x 10 annotated frames x 1 product box
    assert metrics["gallery"]["rows"] == 75  # the 75 annotated product boxes of the 59 images
    assert metrics["official"]["all"]["s1"]["n_gt"] == 10 and metrics["official"]["present"]["s1"]["n_gt"] == 3
    page = tmp_path / "eval" / "report.html"
    sources = re.findall(r'src="([^"]+)"', page.read_text(encoding="utf-8"))
    assert len(sources) >= 30 and all((page.parent / s).is_file() for s in sources)
