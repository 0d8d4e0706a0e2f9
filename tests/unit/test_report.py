"""The HTML report: relative images that exist, no external resources, worst videos first, the
diagnostics table and the points lost, thumbnails for the shown videos only, GIFs, and a split
without annotations."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesearch.data.reader import load_split
from imagesearch.evaluation.evaluate import ReportConfig, compute_metrics
from imagesearch.evaluation.report import describe_models, write_report
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from imagesearch.matching.matcher import Matcher, MatcherConfig, results_of
from tests.unit.tiny_retrieval import fake_extractor, make_tiny_split


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report")
    split = load_split(make_tiny_split(tmp / "split", items=4, seed=3))
    (split.root / "video" / f"{sorted(split.videos)[-1]}.mp4").unlink()  # one missing video
    split = load_split(split.root)
    ex = fake_extractor()
    gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp / "cache")), progress=False)
    traces = Matcher(gallery, ex, MatcherConfig(gt_boxes=True, k=5)).run(split, progress=False)
    metrics, report = compute_metrics(split, traces, results_of(traces), np.array(gallery.item_ids))
    return tmp, split, traces, metrics, report


@pytest.fixture(scope="module")
def page(run):
    tmp, split, traces, metrics, report = run
    weights = tmp / "model.pt"
    weights.write_bytes(b"weights")
    provenance = {"config": {"matcher": {"k": 5}}, "models": describe_models({"detector": weights, "unused": ""})}
    path = write_report(tmp / "eval", split, traces, report, ReportConfig(gif=True, thumb_side=120), metrics, provenance)
    return path, traces, report


def _sources(text: str) -> list[str]:
    return [s for s in re.findall(r'(?:src|href)="([^"]+)"', text) if not s.startswith("#")]


def test_images_are_relative_and_exist(page):
    path, traces, _ = page
    text = path.read_text(encoding="utf-8")
    sources = _sources(text)
    assert sources and all(not s.startswith(("http:", "https:", "//", "/")) for s in sources)
    assert "<script src" not in text and "@import" not in text and "url(" not in text
    for src in sources:
        assert (path.parent / src).is_file(), src
    frames = [s for s in sources if re.match(r"img/v\w+_f\d+\.jpg$", s)]
    assert len(frames) == sum(len(t.frame_indices) for t in traces)  # every sampled frame is shown
    with Image.open(path.parent / frames[0]) as im:
        assert im.format == "JPEG" and max(im.size) == 120


def test_worst_videos_first_and_missing_listed(page):
    path, traces, report = page
    text = path.read_text(encoding="utf-8")
    shown = re.findall(r"<h2>video (\w+):", text)
    lost = {v.video_id: v.total_lost for v in report.videos}
    assert sorted(shown) == sorted(t.video_id for t in traces if t.status == "ok")
    assert [lost.get(v, 0) for v in shown] == sorted((lost.get(v, 0) for v in shown), reverse=True)
    missing = [t.video_id for t in traces if t.status == "missing"]
    assert len(missing) == 1 and f"<td>{missing[0]}</td><td>missing</td>" in text


def test_diagnostics_table_losses_legend_and_provenance(page):
    path, traces, report = page
    text = path.read_text(encoding="utf-8")
    table = re.search(r"<table class='sortable'>(.*?)</table>", text).group(1)
    head = re.findall(r"<th>([^<]+)</th>", table)
    assert head[:4] == ["video", "predicted", "true", "rank"] and {"S1", "S2", "S3", "frame IoU", "reason"} <= set(head)
    rows = re.findall(r'<tr><td data-v="(\w+)"', table)
    assert rows == re.findall(r"<h2>video (\w+):", text)  # one row per shown section, same order
    assert 'addEventListener("click"' in text  # the inline sorter
    lost = sum(v.total_lost for v in report.videos)
    assert f"score {report.score:.4f} + points lost {lost:.4f} = maximum reachable 1.0000" in text
    assert "0.2·F1(S1) + 0.6·F1(S2) + 0.2·F1(S3)" in text and "annotated product instance" in text
    assert "model.pt" in text and "sha1:" in text and "unused" not in text and "k: 5" in text


def test_one_animated_gif_per_shown_video(page):
    path, traces, _ = page
    gifs = sorted(path.parent.glob("img/*.gif"))
    assert len(gifs) == sum(t.status == "ok" for t in traces)
    for gif in gifs:
        trace = next(t for t in traces if gif.name == f"v{t.video_id}.gif")
        with Image.open(gif) as im:
            assert im.n_frames == len(trace.frame_indices)


def test_thumbnails_only_for_the_shown_videos(run):
    tmp, split, traces, metrics, report = run
    out = tmp / "eval_two"
    path = write_report(out, split, traces, report, ReportConfig(max_videos=2, thumb_side=80), metrics)
    shown = re.findall(r"<h2>video (\w+):", path.read_text(encoding="utf-8"))
    assert len(shown) == 2
    written = {re.match(r"v(\w+)_f\d+\.jpg", p.name).group(1) for p in (out / "img").glob("v*_f*.jpg")}
    assert written == set(shown)
    assert len(list((out / "img").glob("v*_f*.jpg"))) == sum(
        len(t.frame_indices) for t in traces if t.video_id in shown
    )
    assert "1 better videos not shown" in path.read_text(encoding="utf-8")  # 3 present videos, 2 shown


def test_split_without_annotations_shows_predictions_only(run):
    tmp, split, traces, metrics, _ = run
    # The same files without the annotation folders: the split as the competition's test split ships.
    root = tmp / "test_split"
    shutil.copytree(split.root, root, ignore=shutil.ignore_patterns("*_annotation"))
    bare = load_split(root)
    assert not bare.annotated and all(v.frames == [] for v in bare.videos.values())
    out = tmp / "eval_test"
    unscored = {"split": str(root), "annotated": False, "videos": metrics["videos"]}
    path = write_report(out, bare, traces, None, ReportConfig(thumb_side=120), unscored)
    text = path.read_text(encoding="utf-8")
    assert "✓" not in text and "✗" not in text and "<th>S1</th>" not in text and "Where the points go" not in text
    assert 'class="right"' not in text and 'class="wrong"' not in text and "without right / wrong marks" in text
    assert "predicted item wrong" not in text and "right or wrong unknown" in text  # the legend of this page
    assert "No annotations: predictions only" in text and "not annotated: not scored" in text
    head = re.findall(r"<th>([^<]+)</th>", re.search(r"<table class='sortable'>(.*?)</table>", text).group(1))
    assert head == ["video", "predicted", "frame", "next items", "votes", "distance", "garments"]
    for src in _sources(text):
        assert (Path(path.parent) / src).is_file(), src
    predicted = [t for t in traces if t.decision is not None and t.decision.item_id is not None]
    # the reported frame box is drawn blue (BGR 220, 120, 30) on the chosen frame's thumbnail
    t = predicted[0]
    with Image.open(out / "img" / f"v{t.video_id}_f{t.decision.frame_index}.jpg") as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(rgb - [30, 120, 220]).sum(1) < 60).sum() > 20
