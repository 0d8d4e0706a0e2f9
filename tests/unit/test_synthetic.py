"""The synthetic split generator: layout, schema, determinism, content (boxes on the drawn garments)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagesearch.data.labels import CATEGORIES
from imagesearch.synthetic import SyntheticConfig, annotated_frame_indices, generate_split, plan_items
from imagesearch.synthetic.patterns import COLOUR_WORDS
from tests.helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED, NUM_ITEMS = 7, 6
CFG = SyntheticConfig(frames=81, width=136, height=240, image_size=160)
ANN_KEYS = {"label", "viewpoint", "display", "instance_id", "box"}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("syn") / "split", NUM_ITEMS, SEED, CFG)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _videos(root: Path) -> dict[str, dict]:
    return {p.stem: _json(p) for p in sorted((root / "video_annotation").glob("*.json"))}


def _item_instances(root: Path, item_id: str) -> set[int]:
    anns = [a for p in (root / "image_annotation" / item_id).glob("*.json") for a in _json(p)["annotations"]]
    return {a["instance_id"] for a in anns if a["instance_id"] > 0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_ann(ann: dict, width: int, height: int, where: str) -> None:
    assert set(ann) == ANN_KEYS, where
    assert ann["label"] in CATEGORIES, where
    assert ann["viewpoint"] in (0, 1) and ann["display"] in (0, 1), where
    assert type(ann["instance_id"]) is int and ann["instance_id"] >= 0, where
    x1, y1, x2, y2 = ann["box"]
    assert all(type(v) is int for v in ann["box"]), where
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, f"{where}: {ann['box']}"


def test_layout_and_schema(split: Path) -> None:
    ids = [f"{SEED * 1000 + i:06d}" for i in range(NUM_ITEMS)]  # default id offset: (seed % 1000) * 1000
    assert sorted(p.name for p in split.iterdir()) == sorted(
        ["image", "image_annotation", "image_text", "video", "video_annotation", "video_text"]
    )
    assert sorted(p.name for p in (split / "image").iterdir()) == ids
    assert sorted(p.name for p in (split / "video").iterdir()) == [f"{i}.mp4" for i in ids]
    for item_id in ids:
        names = sorted((split / "image" / item_id).iterdir(), key=lambda p: int(p.stem))
        assert 3 <= len(names) <= 6
        assert [p.name for p in names] == [f"{k}.jpg" for k in range(len(names))]
        for k, img_path in enumerate(names):
            ann_path = split / "image_annotation" / item_id / f"{k}.json"
            data = _json(ann_path)
            assert set(data) == {"item_id", "img_name", "annotations"}
            assert (data["item_id"], data["img_name"]) == (item_id, f"{k}.jpg")
            assert cv2.imread(str(img_path)).shape == (160, 160, 3)
            assert data["annotations"], ann_path  # every product image shows the product
            for ann in data["annotations"]:
                _check_ann(ann, 160, 160, str(ann_path))
        video = _json(split / "video_annotation" / f"{item_id}.json")
        assert set(video) == {"video_id", "frames"} and video["video_id"] == item_id
        for frame in video["frames"]:
            assert set(frame) == {"frame_index", "annotations"}
            for ann in frame["annotations"]:
                _check_ann(ann, 136, 240, f"{item_id} frame {frame['frame_index']}")
        # A video shows only its own item's instances (and distractors).
        in_video = {a["instance_id"] for f in video["frames"] for a in f["annotations"]} - {0}
        assert in_video and in_video <= _item_instances(split, item_id)


def test_instance_ids_belong_to_one_item(split: Path) -> None:
    owners: dict[int, str] = {}
    for item_dir in (split / "image_annotation").iterdir():
        for iid in _item_instances(split, item_dir.name):
            assert owners.setdefault(iid, item_dir.name) == item_dir.name
            # the real scheme (20004401: item 000044, piece 1), written as 20_000_000 + item * 100 + piece
            assert divmod(iid - 20_000_000, 100) in ((int(item_dir.name), 1), (int(item_dir.name), 2))
    assert len(owners) >= NUM_ITEMS


def test_annotated_frames_are_every_40_below_the_frame_count(split: Path) -> None:
    for video in _videos(split).values():
        assert [f["frame_index"] for f in video["frames"]] == [0, 40, 80]
    assert annotated_frame_indices(400, 40) == [0, 40, 80, 120, 160, 200, 240, 280, 320, 360]
    assert annotated_frame_indices(100, 30) == [0, 30, 60, 90]


def test_same_seed_gives_identical_bytes_with_any_worker_count(split: Path, tmp_path: Path) -> None:
    again = generate_split(tmp_path / "again", NUM_ITEMS, SEED, SyntheticConfig(**{**CFG.__dict__, "workers": 2}))
    first, second = _files(split), _files(again)
    assert sorted(first) == sorted(second)
    assert any(name.endswith(".mp4") for name in first)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_different_seed_gives_different_items(split: Path, tmp_path: Path) -> None:
    same_ids = SyntheticConfig(**{**CFG.__dict__, "id_offset": SEED * 1000})
    other = _files(generate_split(tmp_path / "other", 2, SEED + 1, same_ids))
    first = _files(split)
    for name in ("image/007000/0.jpg", "image/007001/0.jpg", "video/007000.mp4", "video/007001.mp4"):
        assert other[name] != first[name], name
    assert plan_items(2, SEED + 1, CFG)[0].item_id == "008000"  # default offsets keep splits apart


def test_two_piece_items_show_both_pieces_in_images_and_video(split: Path) -> None:
    two_piece = []
    for item_id, video in _videos(split).items():
        ids = _item_instances(split, item_id)
        if len(ids) == 2:
            in_video = {a["instance_id"] for f in video["frames"] for a in f["annotations"]}
            assert ids <= in_video, item_id
            two_piece.append(item_id)
    assert len(two_piece) >= 1


def test_distractors_and_frames_without_the_product(split: Path) -> None:
    videos = _videos(split)
    frame_anns = [a for v in videos.values() for f in v["frames"] for a in f["annotations"]]
    assert any(a["instance_id"] == 0 for a in frame_anns)
    late = [vid for vid, v in videos.items() if all(a["instance_id"] == 0 for a in v["frames"][0]["annotations"])]
    assert late, "some clips start without the product"
    assert len(late) < len(videos), "not all of them"
    for vid in late:  # the product arrives later
        assert any(a["instance_id"] > 0 for f in videos[vid]["frames"][1:] for a in f["annotations"])


def test_items_share_categories_and_colours_but_not_patterns() -> None:
    items = plan_items(NUM_ITEMS, SEED, CFG)
    pairs = [
        (a, b)
        for a in items
        for b in items
        if a.index < b.index and a.pieces[0].category == b.pieces[0].category
        and a.pieces[0].pattern.colour_name == b.pieces[0].pattern.colour_name
    ]  # fmt: skip
    assert pairs
    for a, b in pairs:
        assert a.pieces[0].pattern != b.pieces[0].pattern


def test_texts_name_category_and_colour(split: Path) -> None:
    for folder in ("image_text", "video_text"):
        for path in (split / folder).glob("*.txt"):
            text = path.read_text(encoding="utf-8")
            assert text.count("\n") == 1 and text.endswith("\n")
            labels = {a["label"] for p in (split / "image_annotation" / path.stem).glob("*.json")
                      for a in _json(p)["annotations"] if a["instance_id"] > 0}  # fmt: skip
            assert any(label in text for label in labels), path
            assert any(colour in text for colour in COLOUR_WORDS), path


def _read_all_frames(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int], int]:
    cap = cv2.VideoCapture(str(path))
    fps, size = (
        cap.get(cv2.CAP_PROP_FPS),
        (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))),
    )
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps, size, count


def _plane_residual(pixels: np.ndarray, colours: tuple) -> np.ndarray:
    """Distance of BGR pixels (N, 3) from the plane spanned by the two pattern colours (through black):
    any shading or lighting of any mix of the two colours lies on it."""
    basis, _ = np.linalg.qr(np.asarray(colours, dtype=np.float64).T)  # (3, 2) orthonormal
    p = pixels.reshape(-1, 3).astype(np.float64)
    return np.linalg.norm(p - (p @ basis) @ basis.T, axis=1)


def test_videos_have_requested_size_and_product_is_inside_its_box(split: Path) -> None:
    palettes = {
        it.item_id: {g.instance_id: g.pattern.colours for g in it.pieces} for it in plan_items(NUM_ITEMS, SEED, CFG)
    }
    checked = 0
    for vid, video in _videos(split).items():
        frames, fps, size, count = _read_all_frames(split / "video" / f"{vid}.mp4")
        assert (len(frames), count, size) == (81, 81, (136, 240))
        assert fps == pytest.approx(20.0)
        for f in video["frames"]:
            for ann in f["annotations"]:
                x1, y1, x2, y2 = ann["box"]
                if ann["instance_id"] == 0 or (x2 - x1) * (y2 - y1) < 400:
                    continue
                frame = frames[f["frame_index"]]
                outside = np.ones(frame.shape[:2], bool)
                for other in f["annotations"]:
                    ox1, oy1, ox2, oy2 = other["box"]
                    outside[oy1:oy2, ox1:ox2] = False
                colours = palettes[vid][ann["instance_id"]]
                inside = np.median(_plane_residual(frame[y1:y2, x1:x2], colours))
                assert inside < 0.5 * np.median(_plane_residual(frame[outside], colours)), (vid, f["frame_index"])
                checked += 1
    assert checked >= NUM_ITEMS


def test_product_images_draw_the_garment_in_its_box(split: Path) -> None:
    """Oracle for images of the product alone (display 0) on the plain, vertically graded background:
    subtract the background (interpolated between the corners) and box what is left."""
    checked = 0
    for ann_path in sorted((split / "image_annotation").glob("*/*.json")):
        data = _json(ann_path)
        anns = data["annotations"]
        if anns[0]["display"] != 0:
            continue
        image = cv2.imread(str(split / "image" / ann_path.parent.name / data["img_name"])).astype(np.float64)
        top = np.median(np.concatenate([image[:3, :3], image[:3, -3:]]).reshape(-1, 3), axis=0)
        bottom = np.median(np.concatenate([image[-3:, :3], image[-3:, -3:]]).reshape(-1, 3), axis=0)
        background = top + (bottom - top) * np.linspace(0, 1, image.shape[0])[:, None, None]
        ys, xs = np.nonzero(np.abs(image - background).max(axis=2) > 30)
        boxes = np.array([a["box"] for a in anns])
        union = [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]
        found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert np.abs(np.subtract(found, union)).max() <= 2, (ann_path, found, union)
        for ann in anns:  # and each box holds something else than background
            x1, y1, x2, y2 = ann["box"]
            assert np.abs(image[y1:y2, x1:x2] - background[y1:y2]).mean(axis=(0, 1)).max() > 20, ann_path
        checked += 1
    assert checked >= 3


def test_existing_output_interrupted_run_and_bad_config(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileExistsError, match="already exists"):
        generate_split(split, 1, SEED, CFG)
    import imagesearch.synthetic.split as split_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(split_module, "render_video", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_split(tmp_path / "half", 2, SEED, CFG)
    assert list(tmp_path.iterdir()) == []  # neither the split nor its temporary folder is left
    with pytest.raises(ValueError, match="width=135"):
        SyntheticConfig(width=135)
    with pytest.raises(ValueError, match="min_images=4"):
        SyntheticConfig(min_images=4, max_images=3)


def test_overwrite_replaces_a_split(tmp_path: Path) -> None:
    tiny = SyntheticConfig(frames=3, width=64, height=96, image_size=64, annotate_every=2, text=False)
    out = generate_split(tmp_path / "s", 1, 3, tiny)
    (out / "stale.txt").write_text("old")
    generate_split(out, 1, 3, SyntheticConfig(**{**tiny.__dict__, "overwrite": True}))
    assert sorted(p.name for p in out.iterdir()) == ["image", "image_annotation", "video", "video_annotation"]
    assert [f["frame_index"] for f in _json(out / "video_annotation" / "003000.json")["frames"]] == [0, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_cli_writes_a_split_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("make_synthetic")
    argv = ["--out", str(tmp_path / "cli"), "--items", "2", "--seed", "5", "--frames", "41", "--width", "64",
            "--height", "96", "--image-size", "64", "--workers", "1"]  # fmt: skip
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert "items 2," in out and "videos 2," in out and "annotated frames 4," in out
    assert module.main(argv) == 2  # exists: refused with a message, not a traceback


def test_split_loads_in_strict_mode_with_nothing_skipped(split: Path) -> None:
    from imagesearch.data.reader import load_split

    loaded = load_split(split, strict=True)
    assert loaded.skipped == []
    assert sorted(loaded.items) == sorted(loaded.videos) == [f"{SEED * 1000 + i:06d}" for i in range(NUM_ITEMS)]
    for video_id, video in loaded.videos.items():
        assert video.present and (video.num_frames, video.width, video.height) == (81, 136, 240)
        assert {split_item for split_item in map(loaded.instance_to_item.get, video.instance_ids)} == {video_id}
        assert video.text and loaded.items[video_id].text
    assert sum(len(item.images) for item in loaded.items.values()) == len(list(split.glob("image/*/*.jpg")))


def test_every_category_has_a_plausible_silhouette() -> None:
    from imagesearch.synthetic.shapes import SILHOUETTES, ShapeJitter, garment_polygons

    assert set(SILHOUETTES) == set(CATEGORIES)
    hems = {}
    for category in CATEGORIES:
        pts = np.concatenate(garment_polygons(category, ShapeJitter()))
        top, hems[category] = pts[:, 1].min(), pts[:, 1].max()
        region = SILHOUETTES[category].region
        if category == "背带裤":  # overalls: trousers whose bib and straps reach the shoulders
            assert region == "lower" and 0.15 < top < 0.2
        else:  # bottoms start at the waist, everything else at the neck or shoulders
            assert (top >= 0.37) == (region == "lower"), category
        low, high = {"upper": (0.44, 0.56), "lower": (0.55, 0.97), "full": (0.7, 0.97)}[region]
        assert low <= hems[category] <= high, category  # tops end at the hips, dresses and coats lower
    # lengths order as the names say (body units, figure height 1)
    assert hems["短裙"] < hems["中等半身裙"] < hems["长半身裙"]
    assert hems["短裤"] < hems["中裤"] < hems["长裤"]
    assert hems["短外套"] < hems["长外套"] and hems["短马甲"] < hems["长马甲"]
    widths = {c: np.ptp(np.concatenate(garment_polygons(c, ShapeJitter()))[:, 0]) for c in ("短袖上衣", "背心上衣")}
    assert widths["短袖上衣"] > widths["背心上衣"]  # sleeves stick out
