"""`scripts/evaluate_top20.py` end to end on a tiny generated split: annotated boxes, then a smoke detector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagesearch.data.reader import load_split
from imagesearch.metrics.results import parse_results
from tests.helpers import load_script
from tests.unit.tiny_retrieval import make_tiny_split

REPO = Path(__file__).resolve().parents[2]
TINY_VGG = ["features.weights=none", "features.width_mult=0.125", "features.image_size=32", "progress=false"]


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_split(tmp_path_factory.mktemp("eval") / "split", items=3, seed=7)
    (root / "video" / "007002.mp4").unlink()  # a missing video must be counted, not crash the run
    return root


def test_gt_boxes_end_to_end(split_root, tmp_path):
    out = tmp_path / "eval"
    argv = [str(split_root), "--out", str(out), "--gt-boxes", "--gif", f"gallery.cache_dir={tmp_path / 'cache'}"]
    metrics = load_script("evaluate_top20").main(argv + TINY_VGG)
    split = load_split(split_root)
    results = parse_results(out / "result.json")
    assert set(results) <= {"007000", "007001"} and results  # present videos only
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    videos = metrics["videos"]
    assert (videos["annotated"], videos["evaluated"], videos["missing"], videos["missing_ids"]) == (3, 2, 1, ["007002"])
    # Per-crop recall: every annotated product box of the present videos' annotated frames (all 3 sampled).
    expected = sum(b.instance_id > 0 for v in split.videos.values() if v.present for f in v.frames for b in f.boxes)
    assert metrics["crop_recall"]["num_crops"] == expected
    assert set(metrics["topk"]["present"]) == {"top1", "top5", "top20"}
    assert metrics["official"]["all"]["s1"]["n_gt"] == 3 and metrics["official"]["present"]["s1"]["n_gt"] == 2
    assert metrics["detector_ap50"] is None and metrics["gallery"]["built"]
    diag = metrics["diagnostics"]["all"]
    assert abs(diag["score"] + sum(r["points"] for r in diag["losses"]) - diag["max_reachable"]) < 1e-9
    assert {v["video_id"]: v["reason"] for v in diag["videos"]}["007002"] == "video missing"
    assert len(diag["videos"]) == 3 and "videos" not in metrics["diagnostics"]["present"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "video 007000" in html and len(list((out / "img").glob("*.gif"))) == 2
    assert (out / "config.yaml").is_file()


def test_with_a_smoke_detector(split_root, tmp_path):
    det_out = tmp_path / "detector"
    load_script("train_detector").main([
        str(REPO / "configs/smoke/detector.yaml"), f"data.train_roots=[{split_root}]", f"data.val_root={split_root}",
        f"data.cache_dir={tmp_path / 'frames'}", f"train.out_dir={det_out}", "train.epochs=1",
        "train.max_iters_per_epoch=2", "data.budget=16", "data.batch_size=8", "data.num_workers=0",
        "train.tensorboard=false", "train.progress=false",
    ])  # fmt: skip
    out = tmp_path / "eval"
    argv = [str(split_root), "--out", str(out), f"detector.checkpoint={det_out / 'last.pt'}",
            "gallery.boxes=detector", "detector.min_score=0.0", "matcher.frame_align=40",
            f"gallery.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    metrics = load_script("evaluate_top20").main(argv + TINY_VGG)
    ap = metrics["detector_ap50"]
    assert ap is not None and ap["num_frames"] == 6 and 0.0 <= ap["ap50"] <= 1.0  # 2 videos x frames 0, 40, 80
    assert metrics["videos"]["missing"] == 1
    parse_results(out / "result.json")
