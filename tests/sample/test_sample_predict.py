"""Predictions never read annotations: the real sample and a copy without its annotation folders (the test
split's layout) give the same result.json, with detector boxes on frames and product images."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from imagesearch.checkpoint import save_checkpoint
from imagesearch.config import load_config
from imagesearch.detector.model import build_detector
from imagesearch.detector.train import DetectorRun
from tests.helpers import load_script

pytestmark = [pytest.mark.sample, pytest.mark.usefixtures("one_thread")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke detector at random init: poor boxes, but deterministic ones, on every image and frame."""
    cfg = load_config(DetectorRun, REPO / "configs/smoke/detector.yaml")
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    path = tmp_path_factory.mktemp("det") / "detector.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": {"model": asdict(cfg.model)}})
    return path


def test_an_unannotated_copy_predicts_exactly_what_the_annotated_split_does(
    tianchi_sample: Path, detector: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "test_split"
    for name in ("image", "video"):  # the competition's test split ships these (and optional text) only
        shutil.copytree(tianchi_sample / name, bare / name)
    common = [
        f"detector.checkpoint={detector}", "gallery.boxes=detector", "detector.min_score=0.5",
        "detector.device=cpu", "features.device=cpu", "features.weights=none", "features.width_mult=0.125",
        "features.image_size=32", "matcher.frame_align=40", "matcher.decode_workers=0", "progress=false",
        f"gallery.cache_dir={tmp_path / 'cache'}", "report.max_videos=2",
    ]  # fmt: skip
    predict = load_script("predict").main
    torch.manual_seed(1)  # the random-init feature model: the same weights for both runs
    annotated = predict([str(tianchi_sample), "--out", str(tmp_path / "a"), *common])
    torch.manual_seed(1)
    unannotated = predict([str(bare), "--out", str(tmp_path / "b"), *common])
    result_a = json.loads((tmp_path / "a" / "result.json").read_text(encoding="utf-8"))
    result_b = json.loads((tmp_path / "b" / "result.json").read_text(encoding="utf-8"))
    assert set(result_a) == {"000117", "000134", "000165"}
    assert result_a == result_b
    # The annotated run also scores (7 of its 10 annotated videos have no .mp4); the bare one cannot.
    assert annotated["annotated"] and annotated["official"]["all"]["num_videos"] == 10
    assert not unannotated["annotated"] and "official" not in unannotated
    assert (unannotated["videos"]["total"], unannotated["videos"]["predicted"]) == (3, 3)
    page = (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    assert "No annotations: predictions only" in page and "not annotated: not scored" in page
    assert 'class="right"' not in page and 'class="wrong"' not in page
    # Every product image reached the gallery (no item unreachable), whatever the detector found.
    rows = json.loads((Path(annotated["gallery"]["folder"]) / "meta.json").read_text(encoding="utf-8"))["records"]
    assert {(r["item_id"], r["img_name"]) for r in rows} == {
        (p.parent.name, p.name) for p in (tianchi_sample / "image").glob("*/*.jpg")
    }


def test_evaluate_top20_refuses_an_unannotated_split(tianchi_sample: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tianchi_sample / "image", bare / "image")
    with pytest.raises(ValueError, match="no annotation folders.*scripts/predict.py"):
        load_script("evaluate_top20").main([str(bare), "--out", str(tmp_path / "o"), "features.weights=none"])
