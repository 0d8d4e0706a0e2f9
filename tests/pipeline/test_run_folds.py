"""`scripts/run_pipeline.py` with `folds.source`: leave-one-video-out folds of a tiny split, then the final models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagesearch.data.folds import make_folds
from imagesearch.data.reader import load_split
from imagesearch.metrics.results import parse_results
from tests.helpers import load_script
from tests.pipeline.test_run_pipeline import TINY_TRAIN
from tests.unit.tiny_retrieval import make_tiny_split

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_split(tmp_path_factory.mktemp("folds") / "split", items=2, seed=41)


def test_folds_hold_out_one_video_and_its_item(source: Path, tmp_path: Path) -> None:
    folds = make_folds(source, tmp_path / "splits")
    split = load_split(source)
    assert [f.video_id for f in folds] == sorted(split.videos) and all(f.item_id == f.video_id for f in folds)
    for fold in folds:
        train, evaluate, heldout = (load_split(p) for p in (fold.train, fold.eval, fold.heldout))
        assert fold.item_id not in train.items and fold.video_id not in train.videos
        assert set(evaluate.items) == set(split.items) and list(evaluate.videos) == [fold.video_id]
        assert list(heldout.items) == [fold.item_id] and list(heldout.videos) == [fold.video_id]
        # Links to the source's files, never copies: the only regular file a fold writes is its fold.json.
        for item in evaluate.items:
            assert (fold.eval / "image" / item).is_symlink()
            assert (fold.eval / "image" / item).resolve() == (source / "image" / item).resolve()
        assert (fold.eval / "video" / f"{fold.video_id}.mp4").is_symlink()
    written = [Path(d) / f for d, _, files in os.walk(tmp_path / "splits") for f in files if not (Path(d) / f).is_symlink()]
    assert sorted(p.name for p in written) == ["fold.json"] * len(folds)


def test_run_folds_reports_every_fold_and_writes_the_final_predict_config(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [
        str(REPO / "configs/pipeline/sample.yaml"), f"out_dir={out}", f"folds.source={source}",
        "detector.config=configs/smoke/detector.yaml", "detector.overrides=[]",
        *(f"detector.{o}" for o in TINY_TRAIN), "detector.data.budget=8", "detector.data.batch_size=4",
        "detector.data.num_workers=0",
        "eval.features.weights=none", "eval.features.width_mult=0.125", "eval.features.image_size=32",
        "eval.detector.min_score=0.0", "eval.progress=false", "eval.report.max_videos=1",
    ]  # fmt: skip
    result = load_script("run_pipeline").main(argv)
    assert [r["video"] for r in result["folds"]] == sorted(load_split(source).videos)
    for row in result["folds"]:
        ap = row["detector_ap50"]
        assert ap["val/images_frame"] > 0 and ap["val/images_image"] > 0 and 0 <= ap["val/ap50"] <= 1
        assert row["gt_boxes"] is not None and set(row["own_boxes"]) >= {"score", "s1", "s2", "s3", "top1"}
        for kind in ("frame", "image"):  # every annotated box of the held-out part profiled once
            assert row["box_iou"][kind]["boxes"] == ap[f"val/boxes_{kind}"] == sum(row["box_iou"][kind]["counts"])
    pooled = result["pooled"]
    assert pooled["own_boxes"]["videos"] == 2 and pooled["gt_boxes"]["videos"] == 2
    assert pooled["box_iou"]["frame"]["boxes"] == sum(r["box_iou"]["frame"]["boxes"] for r in result["folds"])
    assert pooled["own_boxes"]["top1_hits"] == sum(round(r["own_boxes"]["top1"]) for r in result["folds"])
    assert json.loads((out / "folds.json").read_text()) == json.loads(json.dumps(result))
    # The final models trained on the whole split, and a config that predicts with them.
    predict_cfg = Path(result["predict_config"])
    assert f"checkpoint: {out / 'final' / 'detector'}" in predict_cfg.read_text()
    metrics = load_script("predict").main([str(source), "--config", str(predict_cfg), "--out", str(tmp_path / "p")])
    assert metrics["videos"]["predicted"] == 2
    parse_results(tmp_path / "p" / "result.json")
    # A rerun skips every finished step.
    again = load_script("run_pipeline").main(argv)
    assert again["pooled"] == result["pooled"]
