"""Cache listing and pruning on caches written by the real builders (gallery, crops, detector frames)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagesearch.caches import delete_caches, find_caches, format_caches, select_prunable
from imagesearch.data.crops import extract_crops
from imagesearch.data.reader import load_split
from imagesearch.detector.data import cache_frames
from imagesearch.matching.gallery import GalleryConfig, build_gallery
from tests.helpers import load_script
from tests.unit.tiny_retrieval import fake_extractor, make_tiny_split

DAY = 86400.0
T0 = 1_700_000_000.0  # "created" times are set by hand: T0, T0 + 1 day, ...


def _age(folder: Path, marker: str, t: float) -> None:
    os.utime(folder / marker, (t, t))


@pytest.fixture()
def cache(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """Under `tmp_path/cache`: 2 galleries of one split (margins 0.1 then 0.2, a day apart), 2 crop caches
    of the split (a version 1 one made by hand, then a current one a day later: one group), the detector
    frames of 2 videos, trunk views of 2 images (the newer 2 days after T0), and an interrupted gallery build."""
    split = load_split(make_tiny_split(tmp_path_factory.mktemp("caches") / "split", items=2, seed=9))
    root = tmp_path / "cache"
    for day, margin in enumerate((0.1, 0.2)):
        g = build_gallery(split, fake_extractor(margin=margin), GalleryConfig(cache_dir=str(root / "gallery")), progress=False)  # fmt: skip
        _age(g.folder, "meta.json", T0 + day * DAY)
    old = root / "crops" / "0123456789ab"  # version 1: one flat img/, distractors in the meta (and key)
    (old / "img").mkdir(parents=True)
    (old / "img" / "i_1_1_0.jpg").write_bytes(b"j" * 10)
    meta = {"split": str(split.root.resolve()), "margin": 0.1, "max_side": 256, "distractors": False}
    (old / "meta.json").write_text(json.dumps(meta) + "\n")
    (old / "crops.jsonl").write_text('{"file": "img/i_1_1_0.jpg", "source": "image"}\n')
    _age(old, "crops.jsonl", T0)
    folder, _ = extract_crops(split, root / "crops", progress=False)
    _age(folder, "crops.jsonl", T0 + DAY)
    for path in {p.parent for p in cache_frames(split, root / "detector_frames", progress=False).values()}:
        _age(path, "frames.json", T0)
    (root / "gallery" / "0123456789abcdef").mkdir()  # killed before meta.json
    (root / "gallery" / "0123456789abcdef" / "parts.npz").write_bytes(b"x" * 100)
    views = root / "detector_frames" / "trunk_views"  # detector.cached's layout: one file per image
    views.mkdir()
    for i, t in enumerate((T0, T0 + 2 * DAY)):
        (views / f"{i:020x}.pt").write_bytes(b"v" * 10)
        os.utime(views / f"{i:020x}.pt", (t, t))
    return root


def test_lists_every_cache_with_its_size_and_what_made_it(cache: Path) -> None:
    entries = find_caches(cache)
    kinds = sorted((e.kind, e.complete) for e in entries)
    assert (
        kinds
        == [("crops", True)] * 2
        + [("detector_frames", True)] * 2
        + [("detector_views", True)]
        + [("gallery", False)]
        + [("gallery", True)] * 2
    )
    for e in entries:
        files = [p for p in e.path.rglob("*") if p.is_file()]
        assert e.files == len(files) and e.bytes == sum(p.stat().st_size for p in files)
    galleries = [e for e in entries if e.kind == "gallery" and e.complete]
    assert [e.description["features"]["margin"] for e in galleries] == [0.1, 0.2]  # oldest first
    assert galleries[0].group == galleries[1].group  # the same split and box source
    crops = [e for e in entries if e.kind == "crops"]
    assert [e.description.get("version") for e in crops] == [None, 2] and crops[0].group == crops[1].group
    assert all(e.description["split"].endswith("split") and e.description["crops"] > 0 for e in crops)
    assert crops[1].description["frame_crops"] > 0 and crops[1].files == crops[1].description["crops"] + 2
    views = next(e for e in entries if e.kind == "detector_views")
    assert views.description == {"images": 2} and views.created == T0 + 2 * DAY and views.bytes == 20
    videos = {e.description["video_id"] for e in entries if e.kind == "detector_frames"}
    assert len(videos) == 2 and all(e.description["frames"] == 3 for e in entries if e.kind == "detector_frames")
    table = format_caches(entries)
    assert "incomplete" in table and "2 video folders" in table and f"{len(entries)} cache folders" in table
    assert "version 1, never read" in table


def test_keep_newest_prunes_the_older_gallery_of_the_same_split_only(cache: Path) -> None:
    entries = find_caches(cache)
    pruned = select_prunable(entries, keep_newest=1)
    # The version 1 crops, the older gallery (margin 0.1) and the interrupted build; frames differ in video.
    assert [(e.kind, e.complete, e.description.get("features", {}).get("margin")) for e in pruned] == [
        ("crops", True, None),
        ("gallery", True, 0.1),
        ("gallery", False, None),  # oldest first: the interrupted build's files were written just now
    ]
    assert "version" not in pruned[0].description
    assert len(select_prunable(entries, keep_newest=0)) == len(entries)
    assert [e.complete for e in select_prunable(entries)] == [False]  # no rule: interrupted builds only


def test_older_than_and_both_rules(cache: Path) -> None:
    entries = find_caches(cache)
    old = select_prunable(entries, older_than=T0 + DAY / 2)
    assert sorted(e.kind for e in old if e.complete) == ["crops", "detector_frames", "detector_frames", "gallery"]
    # Both: outside the newest 1 of its group AND older than the date: the version 1 crops and the old
    # gallery (plus the interrupted build); the frames are the newest of their groups.
    both = select_prunable(entries, keep_newest=1, older_than=T0 + DAY / 2)
    assert [(e.kind, e.complete) for e in both] == [("crops", True), ("gallery", True), ("gallery", False)]
    assert select_prunable(entries, older_than=T0 - DAY, kinds=["gallery"]) == [e for e in entries if not e.complete]
    # Trunk views are one entry, as old as their newest file: pruned whole once that is old enough.
    assert [e.kind for e in select_prunable(entries, older_than=T0 + 3 * DAY, kinds=["detector_views"])] == [
        "detector_views"
    ]


def test_deleting_keeps_the_rest_readable(cache: Path, tmp_path: Path) -> None:
    entries = find_caches(cache)
    pruned = select_prunable(entries, keep_newest=1)
    freed = delete_caches(pruned)
    assert freed == sum(e.bytes for e in pruned) and not any(e.path.exists() for e in pruned)
    left = find_caches(cache)
    assert {e.path for e in left} == {e.path for e in entries} - {e.path for e in pruned}
    assert select_prunable(left, keep_newest=1) == []  # idempotent


def test_cli_prune_is_a_dry_run_unless_yes(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = load_script("caches")
    before = find_caches(cache)
    assert cli.main(["list", str(cache)]) == 0
    assert "gallery" in capsys.readouterr().out
    assert cli.main(["prune", str(cache), "--keep", "1", "--kind", "gallery"]) == 0
    assert "dry run" in capsys.readouterr().out and find_caches(cache) == before
    assert cli.main(["prune", str(cache), "--keep", "1", "--kind", "gallery", "--yes"]) == 0
    assert "deleted 2 cache folders" in capsys.readouterr().out
    assert len(find_caches(cache)) == len(before) - 2
    assert cli.main(["list", str(cache / "nowhere")]) == 2
