"""The split reader on small hand-made splits: layout, normalisation, and every validation rule in both modes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from imagesearch.data.reader import DataError, load_split
from imagesearch.data.records import Box
from imagesearch.data.summary import split_summary
from tests.helpers import load_script

IMG_W, IMG_H = 40, 30  # product images
CLIP_W, CLIP_H, CLIP_FRAMES = 32, 48, 10  # the one present video


def ann(label: str, box: list[Any], instance_id: int, viewpoint: int = 0, display: int = 1) -> dict[str, Any]:
    return {"label": label, "box": box, "instance_id": instance_id, "viewpoint": viewpoint, "display": display}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def write_image(root: Path, item_id: str, k: int, anns: list[dict[str, Any]]) -> None:
    img = root / "image" / item_id / f"{k}.jpg"
    img.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMG_W, IMG_H), (200, 30, 30)).save(img)
    write_json(
        root / "image_annotation" / item_id / f"{k}.json",
        {"item_id": item_id, "img_name": f"{k}.jpg", "annotations": anns},
    )


def write_clip(path: Path, frames: int = CLIP_FRAMES) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (CLIP_W, CLIP_H))
    for i in range(frames):
        writer.write(np.full((CLIP_H, CLIP_W, 3), 20 * i, np.uint8))
    writer.release()


def make_split(root: Path) -> Path:
    """Two items (the second a two-piece set), one video present with 10 frames, one video missing.

    Counts: 5 images, 6 image boxes, 3 annotated frames, 4 frame boxes.
    """
    write_image(root, "000001", 0, [ann("古装", [2, 3, 30, 25], 101, display=0)])
    write_image(root, "000001", 1, [ann("古风", [0, 0, 40, 30], 101), ann("长裤", [5, 5, 20, 28], 0)])
    write_image(root, "000001", 10, [])  # empty annotations; 10 sorts after 1 numerically
    write_image(root, "000002", 0, [ann("短袖Top", [1, 1, 20, 15], 201), ann("长半身裙（到脚）", [1, 15, 20, 29], 202)])
    write_image(root, "000002", 1, [ann("长半身裙（到脚）", [10, 10, 30, 29], 202, display=2)])
    # Key order differs from the image files, frames are out of order, one instance appears twice.
    frame5 = [ann("短袖上衣", [1, 1, 20, 20], 101), ann("古风", [2, 2, 21, 21], 101), ann("长裤", [0, 20, 30, 47], 0)]
    write_json(
        root / "video_annotation" / "000001.json",
        {
            "frames": [{"annotations": frame5, "frame_index": 5}, {"frame_index": 0, "annotations": []}],
            "video_id": "000001",
        },
    )
    write_clip(root / "video" / "000001.mp4")
    # No .mp4 for 000002: its frame size is unknown, so a box past 32x48 is not checked.
    frames = [{"frame_index": 0, "annotations": [ann("长半身裙", [0, 0, 100, 200], 202)]}]
    write_json(root / "video_annotation" / "000002.json", {"video_id": "000002", "frames": frames})
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split(tmp_path_factory.mktemp("split"))


def counts(root: Path, strict: bool = False) -> tuple[int, int, int, int]:
    split = load_split(root, strict=strict)
    images = split.annotated_images()  # what training and scoring see; the gallery keeps every readable file
    frames = [f for v in split.videos.values() for f in v.frames]
    return len(images), sum(len(i.boxes) for i in images), len(frames), sum(len(f.boxes) for f in frames)


def test_valid_split_reads_in_strict_mode(base: Path) -> None:
    split = load_split(base, strict=True)
    assert split.skipped == []
    assert list(split.items) == ["000001", "000002"]
    assert [im.img_name for im in split.items["000001"].images] == ["0.jpg", "1.jpg", "10.jpg"]
    im = split.items["000001"].images[0]
    assert (im.width, im.height, im.path, im.stem) == (IMG_W, IMG_H, base / "image" / "000001" / "0.jpg", "0")
    assert im.boxes == [Box((2.0, 3.0, 30.0, 25.0), "古风", 0, 0, 101)]
    assert split.items["000001"].images[2].boxes == []
    labels = [b.label for i in split.items["000002"].images for b in i.boxes]
    assert labels == ["短袖上衣", "长半身裙", "长半身裙"]
    assert split.items["000002"].images[1].boxes[0].display == 2
    assert split.instance_to_item == {101: "000001", 201: "000002", 202: "000002"}
    assert split.items["000002"].instance_ids == {201, 202}
    assert split.items["000001"].text is None  # no image_text/ folder

    video = split.videos["000001"]
    assert (video.present, video.num_frames, video.width, video.height) == (True, CLIP_FRAMES, CLIP_W, CLIP_H)
    assert [f.frame_index for f in video.frames] == [0, 5]
    assert video.frames[0].boxes == []
    assert [b.instance_id for b in video.frames[1].boxes] == [101, 101, 0]
    assert video.text is None
    missing = split.videos["000002"]
    assert (missing.present, missing.num_frames, missing.width) == (False, None, None)
    assert missing.frames[0].boxes[0].xyxy == (0.0, 0.0, 100.0, 200.0)
    assert counts(base, strict=True) == (5, 6, 3, 4)


def test_without_probing_presence_comes_from_the_file(base: Path) -> None:
    split = load_split(base, probe_videos=False)
    assert (split.videos["000001"].present, split.videos["000001"].num_frames) == (True, None)
    assert split.videos["000002"].present is False


def test_text_is_read_when_present(tmp_path: Path) -> None:
    root = make_split(tmp_path)
    (root / "image_text").mkdir()
    (root / "image_text" / "000001.txt").write_text("红色 古风 连衣裙\n", encoding="utf-8")
    (root / "video_text").mkdir()
    (root / "video_text" / "000001.txt").write_text("", encoding="utf-8")
    split = load_split(root, strict=True)
    assert split.items["000001"].text == "红色 古风 连衣裙"
    assert split.items["000002"].text is None
    assert split.videos["000001"].text == ""  # present but empty
    assert split.videos["000002"].text is None


def test_summary(base: Path) -> None:
    s = split_summary(load_split(base))
    assert (s["items"], s["product_images"], s["image_boxes"]) == (2, 5, 6)
    assert (s["annotated_videos"], s["annotated_frames"], s["frame_boxes"]) == (2, 3, 4)
    assert (s["videos_present"], s["videos_missing"]) == (["000001"], ["000002"])
    assert s["image_boxes_per_category"] == {"古风": 2, "长半身裙": 2, "长裤": 1, "短袖上衣": 1}
    assert s["frame_boxes_per_category"] == {"短袖上衣": 1, "古风": 1, "长裤": 1, "长半身裙": 1}
    assert s["instances_per_frame"] == {"0": 1, "1": 2}  # frame 0 empty; frame 5 has 101 twice; 000002 has 202
    assert s["frames_with_repeated_instance"] == 1
    assert s["distractor_boxes"] == {"images": 1, "frames": 1}
    assert (s["video_instances_without_item"], s["skipped"]) == (0, {})


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="split directory not found"):
        load_split(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not a split directory"):
        load_split(tmp_path)


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_json(path, data)


def img_ann(root: Path, item: str = "000001", k: int = 1) -> Path:
    return root / "image_annotation" / item / f"{k}.json"


def vid_ann(root: Path, video: str = "000001") -> Path:
    return root / "video_annotation" / f"{video}.json"


def set_box(field: str, value: Any, k: int = 1, i: int = 0) -> Callable[[Path], Path]:
    def breaker(root: Path) -> Path:
        edit_json(img_ann(root, k=k), lambda d: d["annotations"][i].__setitem__(field, value))
        return img_ann(root, k=k)

    return breaker


def set_frame_box(field: str, value: Any, j: int = 0, i: int = 0) -> Callable[[Path], Path]:
    def breaker(root: Path) -> Path:
        edit_json(vid_ann(root), lambda d: d["frames"][j]["annotations"][i].__setitem__(field, value))
        return vid_ann(root)

    return breaker


def pop_box(field: str, i: int = 0) -> Callable[[Path], Path]:
    def breaker(root: Path) -> Path:
        edit_json(img_ann(root), lambda d: d["annotations"][i].pop(field))
        return img_ann(root)

    return breaker


def set_annotations(root: Path, anns: list[Any]) -> Path:
    edit_json(img_ann(root), lambda d: d.__setitem__("annotations", anns))
    return img_ann(root)


def mismatched_item(root: Path) -> Path:
    edit_json(img_ann(root), lambda d: d.__setitem__("item_id", "000002"))
    return img_ann(root)


def break_json(root: Path) -> Path:
    img_ann(root).write_text('{"item_id": "000001", "annotations": [', encoding="utf-8")
    return img_ann(root)


def delete_key(path_of: Callable[[Path], Path], key: str, frame: int | None = None) -> Callable[[Path], Path]:
    def breaker(root: Path) -> Path:
        edit_json(path_of(root), lambda d: (d if frame is None else d["frames"][frame]).pop(key))
        return path_of(root)

    return breaker


def delete_image(root: Path) -> Path:
    (root / "image" / "000001" / "1.jpg").unlink()
    return img_ann(root)


def extra_image(root: Path) -> Path:
    Image.new("RGB", (IMG_W, IMG_H)).save(root / "image" / "000002" / "7.jpg")
    return root / "image" / "000002" / "7.jpg"


def shared_instance(root: Path) -> Path:
    edit_json(img_ann(root, "000002", 1), lambda d: d["annotations"][0].__setitem__("instance_id", 101))
    return img_ann(root, "000002", 1)


def frame_index(value: Any) -> Callable[[Path], Path]:
    def breaker(root: Path) -> Path:
        edit_json(vid_ann(root), lambda d: d["frames"][1].__setitem__("frame_index", value))
        return vid_ann(root)

    return breaker


def garbage_video(root: Path) -> Path:
    (root / "video" / "000002.mp4").write_bytes(b"not a video" * 100)
    return root / "video" / "000002.mp4"


def mismatched_id(root: Path) -> Path:
    edit_json(vid_ann(root), lambda d: d.__setitem__("video_id", "000009"))
    return vid_ann(root)


# name -> (break the base split and return the file at fault, field, reason fragment, counts left in lenient mode)
# Base counts: (annotated images, image boxes, frames, frame boxes) = (5, 6, 3, 4).
CASES: dict[str, tuple[Callable[[Path], Path], str, str, tuple[int, int, int, int]]] = {
    "unreadable json": (break_json, "json", "unreadable JSON", (4, 4, 3, 4)),
    "no annotations": (delete_key(img_ann, "annotations"), "annotations", "missing field", (4, 4, 3, 4)),
    "no label": (pop_box("label"), "annotations[0].label", "missing field", (5, 5, 3, 4)),
    "label not a string": (set_box("label", None), "annotations[0].label", "unknown label: None", (5, 5, 3, 4)),
    "no box": (pop_box("box", i=1), "annotations[1].box", "missing field", (5, 5, 3, 4)),
    "box of 3": (set_box("box", [1, 2, 3]), "annotations[0].box", "not 4 numbers", (5, 5, 3, 4)),
    "box of strings": (set_box("box", ["1", 2, 3, 4]), "annotations[0].box", "not 4 numbers", (5, 5, 3, 4)),
    "x2 <= x1": (set_box("box", [20, 2, 20, 9]), "annotations[0].box", "x2 <= x1", (5, 5, 3, 4)),
    "y2 <= y1": (set_box("box", [2, 9, 20, 3]), "annotations[0].box", "y2 <= y1", (5, 5, 3, 4)),
    "past the right edge": (
        set_box("box", [2, 2, IMG_W + 6, 9]),
        "annotations[0].box",
        "box outside the picture",
        (5, 5, 3, 4),
    ),
    "above the top": (set_box("box", [2, -6, 20, 9]), "annotations[0].box", "box outside the picture", (5, 5, 3, 4)),
    "unknown label": (set_box("label", "西装"), "annotations[0].label", "unknown label: '西装'", (5, 5, 3, 4)),
    "float instance id": (set_box("instance_id", 101.0), "annotations[0].instance_id", "not an integer", (5, 5, 3, 4)),
    "negative instance id": (set_box("instance_id", -3), "annotations[0].instance_id", "negative", (5, 5, 3, 4)),
    "no viewpoint": (pop_box("viewpoint"), "annotations[0].viewpoint", "missing field", (5, 5, 3, 4)),
    "annotation not an object": (
        lambda r: set_annotations(r, ["box"]),
        "annotations[0]",
        "not an object",
        (5, 4, 3, 4),
    ),
    "item id mismatch": (mismatched_item, "item_id", "mismatch", (4, 4, 3, 4)),
    "image file missing": (delete_image, "img_name", "image file missing", (4, 4, 3, 4)),
    "image without annotation": (extra_image, "image", "image without annotation", (5, 6, 3, 4)),
    "instance in two items": (
        shared_instance,
        "annotations[0].instance_id",
        "instance in another item: 000001",
        (5, 5, 3, 4),
    ),
    "no frames": (delete_key(vid_ann, "frames"), "frames", "missing field", (5, 6, 1, 1)),
    "video id mismatch": (mismatched_id, "video_id", "mismatch", (5, 6, 1, 1)),
    "no frame_index": (
        delete_key(vid_ann, "frame_index", frame=0),
        "frames[0].frame_index",
        "missing field",
        (5, 6, 2, 1),
    ),
    "frame index past the end": (
        frame_index(CLIP_FRAMES),
        "frames[1].frame_index",
        "outside the video: 10 >= 10",
        (5, 6, 2, 4),
    ),
    "negative frame index": (frame_index(-1), "frames[1].frame_index", "not an integer >= 0", (5, 6, 2, 4)),
    "repeated frame index": (frame_index(5), "frames[1].frame_index", "repeated frame index: 5", (5, 6, 2, 4)),
    "frame box x2 <= x1": (
        set_frame_box("box", [9, 1, 4, 20], i=1),
        "frames[0].annotations[1].box",
        "x2 <= x1",
        (5, 6, 3, 3),
    ),
    "frame box past the frame": (
        set_frame_box("box", [1, 1, CLIP_W + 6, 20]),
        "frames[0].annotations[0].box",
        "box outside the picture",
        (5, 6, 3, 3),
    ),
    "frame unknown label": (
        set_frame_box("label", "Top"),
        "frames[0].annotations[0].label",
        "unknown label",
        (5, 6, 3, 3),
    ),
    "unreadable video": (garbage_video, "video", "unreadable video", (5, 6, 3, 4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_validation_rule_strict(name: str, tmp_path: Path) -> None:
    breaker, field, reason, _ = CASES[name]
    path = breaker(make_split(tmp_path))
    with pytest.raises(DataError) as info:
        load_split(tmp_path, strict=True)
    err = info.value
    assert (err.path, err.field) == (path, field)
    assert str(err).startswith(f"{path}: {field}: ") and reason in err.reason


@pytest.mark.parametrize("name", list(CASES))
def test_validation_rule_lenient(name: str, tmp_path: Path) -> None:
    breaker, field, reason, left = CASES[name]
    path = breaker(make_split(tmp_path))
    split = load_split(tmp_path)
    assert [(r.path, r.field) for r in split.skipped] == [(path, field)]
    assert reason in split.skipped[0].reason
    assert counts(tmp_path) == left
    assert split_summary(split)["skipped"] == {split.skipped[0].reason.split(":", 1)[0]: 1}


def test_unreadable_video_counts_as_missing(tmp_path: Path) -> None:
    garbage_video(make_split(tmp_path))
    assert load_split(tmp_path).videos["000002"].present is False


def test_small_overrun_is_clipped_not_rejected(tmp_path: Path) -> None:
    root = make_split(tmp_path)
    set_box("box", [-2, -5, IMG_W + 5, IMG_H + 1.5])(root)
    set_frame_box("box", [-1, 3, CLIP_W + 4, CLIP_H + 2])(root)
    split = load_split(root, strict=True)
    assert split.items["000001"].images[1].boxes[0].xyxy == (0.0, 0.0, float(IMG_W), float(IMG_H))
    assert split.videos["000001"].frames[1].boxes[0].xyxy == (0.0, 3.0, float(CLIP_W), float(CLIP_H))


def test_example_message_format(tmp_path: Path) -> None:
    root = make_split(tmp_path)
    set_frame_box("box", [9, 1, 4, 20], i=1)(root)
    with pytest.raises(DataError) as info:
        load_split(root, strict=True)
    assert str(info.value) == f"{vid_ann(root)}: frames[0].annotations[1].box: x2 <= x1: [9, 1, 4, 20]"


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = load_script("inspect_data")
    assert cli.main([str(tmp_path / "absent")]) == 2
    assert "split directory not found" in capsys.readouterr().err
    bad = tmp_path / "split"
    (bad / "video_annotation").mkdir(parents=True)
    (bad / "video_annotation" / "000001.json").write_text("{", encoding="utf-8")
    assert cli.main([str(bad), "--strict"]) == 2
    assert f"{bad / 'video_annotation' / '000001.json'}: json: unreadable JSON" in capsys.readouterr().err
    assert cli.main([str(bad)]) == 0  # lenient: the file is skipped and reported
    assert "unreadable JSON  1" in capsys.readouterr().out


def strip_annotations(root: Path) -> Path:
    """The competition's test-split layout: the annotation folders removed."""
    import shutil

    for name in ("image_annotation", "video_annotation"):
        shutil.rmtree(root / name)
    return root


def test_unannotated_split_reads_its_files(tmp_path: Path) -> None:
    root = strip_annotations(make_split(tmp_path))
    write_clip(root / "video" / "000007.mp4", frames=4)  # a video that no annotation ever named
    split = load_split(root, strict=True)  # nothing is malformed: annotations are simply absent
    assert not split.annotated and split.skipped == []
    assert {k: [im.img_name for im in it.images] for k, it in split.items.items()} == {
        "000001": ["0.jpg", "1.jpg", "10.jpg"],
        "000002": ["0.jpg", "1.jpg"],
    }
    assert all(not im.annotated and im.boxes == [] for im in split.product_images())
    assert list(split.videos) == ["000001", "000007"]  # 000002 had only an annotation
    assert [(v.present, v.annotated, v.num_frames, v.frames) for v in split.videos.values()] == [
        (True, False, CLIP_FRAMES, []),
        (True, False, 4, []),
    ]
    assert split.instance_to_item == {}


def test_rejected_annotation_keeps_the_file_for_prediction(tmp_path: Path) -> None:
    root = make_split(tmp_path)
    break_json(root)
    (root / "video_annotation" / "000001.json").write_text("[]", encoding="utf-8")  # not an object
    split = load_split(root)
    image = split.items["000001"].images[1]  # break_json breaks 000001/1.json
    assert (image.img_name, image.annotated, image.boxes) == ("1.jpg", False, [])
    assert len(split.product_images()) == 5 and len(split.annotated_images()) == 4
    video = split.videos["000001"]
    assert (video.present, video.annotated, video.frames) == (True, False, [])
    assert split.videos["000002"].annotated and split.annotated


def test_cli_reports_an_unannotated_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = strip_annotations(make_split(tmp_path))
    (root / "image" / "000002" / "1.jpg").write_bytes(b"not a jpeg")
    cli = load_script("inspect_data")
    assert cli.main([str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["annotated"], summary["items"], summary["product_images"], summary["annotated_images"]) == (
        False, 2, 4, 0,
    )  # fmt: skip
    assert (summary["videos"], summary["videos_present"], summary["annotated_videos"]) == (1, ["000001"], 0)
    assert summary["unreadable_files"] == [str(root / "image" / "000002" / "1.jpg")]
    assert cli.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "none (a test split: predict only, no score)" in out and "unreadable files" in out
