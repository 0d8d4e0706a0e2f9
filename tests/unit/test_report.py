"""The HTML report: relative images that exist, no external resources, worst videos first, GIFs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from imagesearch.data.reader import load_split
from imagesearch.evaluation.evaluate import ReportConfig, compute_metrics
from imagesearch.evaluation.report import FrameThumbs, write_report
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from imagesearch.matching.matcher import Matcher, MatcherConfig, results_of
from tests.unit.tiny_retrieval import fake_extractor, make_tiny_split


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report")
    split = load_split(make_tiny_split(tmp / "split", items=4, seed=3))
    (split.root / "video" / f"{sorted(split.videos)[-1]}.mp4").unlink()  # one missing video
    split = load_split(split.root)
    ex = fake_extractor()
    gallery = build_gallery(split, ex, GalleryConfig(cache_dir=str(tmp / "cache")), progress=False)
    out = tmp / "eval"
    thumbs = FrameThumbs(out / "img", side=120)
    traces = Matcher(gallery, ex, MatcherConfig(gt_boxes=True, k=5)).run(split, on_frames=thumbs, progress=False)
    results = results_of(traces)
    metrics, report = compute_metrics(split, traces, results, np.array(gallery.item_ids))
    cfg = ReportConfig(gif=True, thumb_side=120)
    path = write_report(out, split, traces, report, gallery, cfg, thumbs, metrics)
    return path, traces, report


def test_images_are_relative_and_exist(page):
    path, traces, _ = page
    text = path.read_text(encoding="utf-8")
    sources = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert sources and all(not s.startswith(("http:", "https:", "//", "/")) for s in sources)
    assert "<script" not in text and "@import" not in text and "url(" not in text
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
    levels = {v.video_id: v.s1 + v.s2 + v.s3 for v in report.videos}
    assert sorted(shown) == sorted(t.video_id for t in traces if t.status == "ok")
    assert [levels.get(v, 0) for v in shown] == sorted(levels.get(v, 0) for v in shown)
    missing = [t.video_id for t in traces if t.status == "missing"]
    assert len(missing) == 1 and f"<td>{missing[0]}</td><td>missing</td>" in text


def test_one_animated_gif_per_shown_video(page):
    path, traces, _ = page
    gifs = sorted(path.parent.glob("img/*.gif"))
    assert len(gifs) == sum(t.status == "ok" for t in traces)
    for gif in gifs:
        trace = next(t for t in traces if gif.name == f"v{t.video_id}.gif")
        with Image.open(gif) as im:
            assert im.n_frames == len(trace.frame_indices)
