"""`scripts/train_classifier.py main()` on tiny generated splits: train, evaluate, resume, merge."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from imagesearch.classifier.merging import load_merge_map
from imagesearch.data.labels import CATEGORIES
from imagesearch.synthetic import SyntheticConfig, generate_split
from tests.helpers import load_script

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    return load_script("train_classifier")


def test_train_resume_merge(tmp_path: Path) -> None:
    tiny = SyntheticConfig(frames=41, width=96, height=160, image_size=96, max_images=3)
    generate_split(tmp_path / "train", 6, 0, tiny)
    generate_split(tmp_path / "val", 4, 1, tiny)
    train_classifier = _script()
    out = tmp_path / "run"
    args = [
        str(REPO / "configs" / "smoke" / "classifier.yaml"),
        f"data.train_roots=[{tmp_path / 'train'}]",
        f"data.val_root={tmp_path / 'val'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.samples_per_epoch=32",
        "data.max_side=64",
        "model.image_size=32",
        f"train.out_dir={out}",
        "train.progress=false",
    ]
    train_classifier.main([*args, "train.epochs=1"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0]
    assert 0.0 <= lines[0]["val/acc"] <= 1.0 and 0.0 < lines[0]["val/map"] <= 1.0
    assert any(k.startswith("val_ap/") for k in lines[0])
    confusion = json.loads((out / "confusion" / "epoch_000.json").read_text(encoding="utf-8"))
    matrix = np.array(confusion["matrix"])
    n_val = sum(
        len(json.loads(p.read_text())["annotations"]) for p in (tmp_path / "val").glob("image_annotation/*/*.json")
    )
    n_val += sum(len(f["annotations"]) for p in (tmp_path / "val").glob("video_annotation/*.json") for f in json.loads(p.read_text())["frames"])  # fmt: skip
    assert matrix.shape == (23, 23) and matrix.sum() == n_val and confusion["categories"] == list(CATEGORIES)
    assert np.isclose(np.trace(matrix) / n_val, lines[0]["val/acc"])
    assert np.array_equal(np.load(out / "confusion.npy"), matrix)

    # Resume: one more epoch continues from last.pt.
    report = train_classifier.main([*args, "train.epochs=2"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1] and lines[1]["global_step"] == 2 * lines[0]["global_step"]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    assert (out / "confusion" / "epoch_001.json").is_file()

    merge_map = load_merge_map(out / "merge_map.json")
    assert list(merge_map) == list(CATEGORIES)
    merging = json.loads((out / "merging.json").read_text(encoding="utf-8"))
    assert merging == report and merging["num_crops"] == n_val
    assert set(merging["before"]) == set(merging["after"]) == {"acc", "map", "ap"}
    assert sorted(merging["groups"]) == sorted({g for g in merge_map.values() if "+" in g})

    # TensorBoard is an optional extra (`make test` installs it): the picture goes through the engine's writer.
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(out / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "val/confusion" in events.Tags()["images"] and "val/map" in events.Tags()["scalars"]
    assert [e.step for e in events.Images("val/confusion")] == [0, 1]  # step = epoch
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2  # one writer per fit call, none of its own
