"""The reader and the inspection CLI on the real Tianchi sample (10 items, 3 of 10 videos present)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from imagesearch.data.labels import CATEGORIES
from imagesearch.data.reader import load_split
from imagesearch.data.records import Split
from imagesearch.data.summary import split_summary
from tests.helpers import load_script

pytestmark = pytest.mark.sample

REPO_ROOT = Path(__file__).resolve().parents[2]
ITEM_IDS = ["000006", "000044", "000054", "000077", "000078", "000083", "000103", "000117", "000134", "000165"]
PRESENT = ["000117", "000134", "000165"]
MISSING = ["000006", "000044", "000054", "000077", "000078", "000083", "000103"]


@pytest.fixture(scope="module")
def split(tianchi_sample: Path) -> Split:
    return load_split(tianchi_sample, strict=True)


def test_counts(split: Split) -> None:
    assert list(split.items) == ITEM_IDS
    assert len(split.product_images()) == 59
    assert [len(item.images) for item in split.items.values()] == [6] * 9 + [5]
    assert list(split.videos) == ITEM_IDS
    assert sorted(v.video_id for v in split.videos.values() if v.present) == PRESENT
    assert split.skipped == []


def test_images_and_videos(split: Split) -> None:
    # Not all 800x800 as the sample README says: three images are a pixel short.
    sizes = Counter((im.width, im.height) for im in split.product_images())
    assert sizes == {(800, 800): 50, (750, 750): 6, (799, 799): 2, (799, 800): 1}
    assert {(im.width, im.height) for im in split.items["000054"].images} == {(750, 750)}
    assert [im.img_name for im in split.items["000165"].images] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    for video in split.videos.values():
        assert [f.frame_index for f in video.frames] == list(range(0, 400, 40))
        expected = (True, 400, 540, 960) if video.video_id in PRESENT else (False, None, None, None)
        assert (video.present, video.num_frames, video.width, video.height) == expected


def test_repeated_instance_in_one_frame_of_000054(split: Split) -> None:
    frame0 = split.videos["000054"].frames[0]
    assert Counter(b.instance_id for b in frame0.boxes) == {20005401: 2, 0: 1}
    repeated = [
        (v.video_id, f.frame_index)
        for v in split.videos.values()
        for f in v.frames
        if max(Counter(b.instance_id for b in f.boxes if b.instance_id > 0).values(), default=0) > 1
    ]
    assert repeated == [("000054", k) for k in range(0, 320, 40)]


def test_distractors_and_labels(split: Split) -> None:
    frame_boxes = [b for v in split.videos.values() for f in v.frames for b in f.boxes]
    image_boxes = [b for im in split.product_images() for b in im.boxes]
    assert sum(b.instance_id == 0 for b in frame_boxes) == 98
    assert sum(b.instance_id == 0 for b in image_boxes) == 11
    image_labels = {b.label for b in image_boxes}
    assert len(image_labels) == 12 and image_labels <= set(CATEGORIES)
    # 短裤 occurs only on distractors in frames: 13 labels in all.
    assert {b.label for b in frame_boxes} - image_labels == {"短裤"}
    assert {b.label for b in frame_boxes if b.instance_id > 0} <= image_labels


def test_instance_to_item(split: Split) -> None:
    # From the files (independent of the reader): three items are two-piece sets.
    assert split.instance_to_item == {
        20000601: "000006", 20004401: "000044", 20005401: "000054", 20007701: "000077", 20007702: "000077",
        20007801: "000078", 20007802: "000078", 20008301: "000083", 20010301: "000103", 20010302: "000103",
        20011701: "000117", 20013401: "000134", 20016501: "000165",
    }  # fmt: skip
    for item_id, item in split.items.items():
        assert all(split.instance_to_item[i] == item_id for i in item.instance_ids)
    video_ids = {b.instance_id for v in split.videos.values() for f in v.frames for b in f.boxes if b.instance_id}
    assert video_ids <= set(split.instance_to_item)
    # Each video shows its own item's instances (true of train/validation; the reader never uses it).
    for video in split.videos.values():
        assert {split.instance_to_item[i] for i in video.instance_ids} == {video.video_id}


def test_summary(split: Split) -> None:
    s = split_summary(split)
    assert (s["items"], s["product_images"], s["image_boxes"]) == (10, 59, 86)
    assert (s["annotated_videos"], s["annotated_frames"], s["frame_boxes"]) == (10, 100, 202)
    assert (s["videos_present"], s["videos_missing"]) == (PRESENT, MISSING)
    assert s["instances_per_frame"] == {"0": 4, "1": 96}  # 000103 shows no product in frames 240-360
    assert s["frames_with_repeated_instance"] == 8
    assert s["skipped"] == {}


def _load_cli() -> ModuleType:
    return load_script("inspect_data")


def test_cli_json(tianchi_sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_cli().main([str(tianchi_sample), "--json", "--strict"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["items"], s["product_images"], s["annotated_videos"]) == (10, 59, 10)
    assert (s["videos_present"], s["videos_missing"]) == (PRESENT, MISSING)


def test_cli_table(tianchi_sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_cli().main([str(tianchi_sample)]) == 0
    out = capsys.readouterr().out
    assert "videos present               3 (000117 000134 000165)" in out
    assert "videos missing               7 (000006 000044 000054 000077 000078 000083 000103)" in out
