"""The crop cache on a generated split: one folder for the classifier and the embedder, one decode per video,
the same index and bytes whatever the worker count, capped shard folders, interrupted builds redone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagesearch.data.video as video_module
from imagesearch.classifier.data import ClassifierDataConfig, build_datasets, dataset_records
from imagesearch.data.crops import INDEX_NAME, extract_crops, load_crop_index, plan_crop_tasks
from imagesearch.data.reader import load_split
from imagesearch.data.records import Split
from imagesearch.embedder.data import EmbedderDataConfig, build_retrieval_set, build_train_loader
from tests.unit.tiny_retrieval import make_tiny_split


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 items and videos (distractors included); one video's .mp4 removed (missing: no crops, no decode)."""
    root = make_tiny_split(tmp_path_factory.mktemp("crop_cache") / "split", items=4, seed=3)
    next(iter(sorted((root / "video").glob("*.mp4")))).unlink()
    return root


@pytest.fixture()
def split(split_root: Path) -> Split:
    return load_split(split_root)


def _cache_folders(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir())


def test_classifier_and_embedder_share_one_cache(split_root: Path, tmp_path: Path) -> None:
    shared = dict(train_roots=[str(split_root)], val_root=str(split_root), cache_dir=str(tmp_path / "crops"),
                  max_side=64, num_workers=0)  # fmt: skip
    cls_train, cls_val = build_datasets(ClassifierDataConfig(**shared), image_size=32)  # type: ignore[arg-type]
    emb_cfg = EmbedderDataConfig(**shared)  # type: ignore[arg-type]
    _, _, emb_records = build_train_loader(emb_cfg, image_size=32, seed=0)
    retrieval = build_retrieval_set(split_root, emb_cfg, image_size=32)

    (folder,) = _cache_folders(tmp_path / "crops")  # cut once, for both stages
    cls_records = dataset_records(cls_train)
    assert {d.folder for d in cls_train.datasets} == {d.folder for d in cls_val.datasets} == {folder}
    assert retrieval.queries.dataset.folder == retrieval.gallery.dataset.folder == folder
    assert cls_records == load_crop_index(folder)  # the classifier's view: every garment
    assert any(r.instance_id == 0 for r in cls_records)
    assert emb_records == [r for r in cls_records if r.instance_id > 0]  # the embedder's: no distractors
    assert json.loads((folder / "meta.json").read_text())["version"] == 2


def test_each_present_video_is_decoded_once(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[int]]] = []
    read_frames = video_module.read_frames

    def counting(path, indices, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((Path(path).stem, list(indices)))
        return read_frames(path, indices, *args, **kwargs)

    monkeypatch.setattr(video_module, "read_frames", counting)
    _, records = extract_crops(split, tmp_path, max_side=64, include_distractors=True, progress=False)
    expected = {
        v.video_id: [f.frame_index for f in v.frames if f.boxes]
        for v in split.videos.values()
        if v.present and any(f.boxes for f in v.frames)
    }
    assert 0 < len(expected) < len(split.videos)  # the removed video is not decoded
    assert sorted(calls) == sorted(expected.items())
    assert {r.video_id for r in records if r.source == "frame"} == set(expected)
    calls.clear()
    extract_crops(split, tmp_path, max_side=64, progress=False)  # complete: nothing decoded again
    assert calls == []


def test_workers_give_the_same_index_and_bytes(split: Split, tmp_path: Path) -> None:
    one, records = extract_crops(split, tmp_path / "w0", max_side=64, include_distractors=True, progress=False)
    two, records2 = extract_crops(
        split, tmp_path / "w2", max_side=64, include_distractors=True, workers=2, progress=False
    )
    assert one.name == two.name and records2 == records and len(records) > 10
    assert (two / INDEX_NAME).read_bytes() == (one / INDEX_NAME).read_bytes()
    for r in records:
        assert (two / r.file).read_bytes() == (one / r.file).read_bytes(), r.file


def test_shard_folders_hold_at_most_the_cap(split: Split, tmp_path: Path) -> None:
    folder, records = extract_crops(split, tmp_path, max_side=64, include_distractors=True, progress=False, shard_cap=7)
    shards = sorted(p for p in (folder / "img").iterdir())
    assert all(p.is_dir() for p in shards) and len(shards) == -(-len(records) // 7)
    assert all(len(list(p.iterdir())) <= 7 for p in shards)
    assert sorted(str(p.relative_to(folder)) for p in (folder / "img").rglob("*.jpg")) == sorted(
        r.file for r in records
    )
    assert [r.file.split("/")[1] for r in records] == sorted(r.file.split("/")[1] for r in records)  # index order
    with pytest.raises(ValueError, match="shard_cap"):
        plan_crop_tasks(split, shard_cap=0)


def test_an_interrupted_build_is_resumed(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, records = extract_crops(split, tmp_path, max_side=64, include_distractors=True, progress=False)
    original = {r.file: (folder / r.file).read_bytes() for r in records}
    # Killed before the index: one video's crops were not all written yet.
    (folder / INDEX_NAME).unlink()
    lost = next(r for r in records if r.source == "frame")
    (folder / lost.file).unlink()
    decoded: list[str] = []
    read_frames = video_module.read_frames

    def counting(path, indices, *args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(Path(path).stem)
        return read_frames(path, indices, *args, **kwargs)

    monkeypatch.setattr(video_module, "read_frames", counting)
    again, records2 = extract_crops(split, tmp_path, max_side=64, include_distractors=True, progress=False)
    assert again == folder and records2 == records and (folder / INDEX_NAME).is_file()
    assert decoded == [lost.video_id]  # only the source with a crop missing is cut again
    assert {r.file: (folder / r.file).read_bytes() for r in records} == original
    assert not list(folder.rglob("*.tmp"))
