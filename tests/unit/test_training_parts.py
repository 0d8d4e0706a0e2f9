"""Every training part reaches every stage, and ids that repeat across parts never pair different products."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from imagesearch.config import load_config
from imagesearch.data.reader import load_split
from imagesearch.detector.train import DetectorRun, build_datasets
from imagesearch.embedder.data import EmbedderDataConfig, build_train_loader
from imagesearch.synthetic import SyntheticConfig, generate_split

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two parts with other products under the same ids (id_offset 0 in both), and a validation split."""
    root = tmp_path_factory.mktemp("parts")
    cfg = SyntheticConfig(frames=41, width=64, height=112, image_size=96, min_images=1, max_images=2, text=False,
                          id_offset=0)  # fmt: skip
    return [generate_split(root / name, 3, seed=seed, config=cfg) for name, seed in (("a", 21), ("b", 22), ("v", 23))]


def test_the_parts_really_share_ids(parts: list[Path]) -> None:
    a, b = load_split(parts[0]), load_split(parts[1])
    assert set(a.items) == set(b.items) and set(a.instance_to_item) & set(b.instance_to_item)


def test_the_detector_sees_every_training_part(parts: list[Path], tmp_path: Path) -> None:
    overrides = [f"data.train_roots=[{parts[0]},{parts[1]}]", f"data.val_root={parts[2]}",
                 f"data.cache_dir={tmp_path}", "data.num_workers=0", "train.progress=false"]  # fmt: skip
    train, val = build_datasets(load_config(DetectorRun, REPO / "configs/smoke/detector.yaml", overrides))
    one, _ = build_datasets(load_config(DetectorRun, REPO / "configs/smoke/detector.yaml", overrides[1:] + [f"data.train_roots=[{parts[0]}]"]))  # fmt: skip
    assert {Path(s.path).parts[-4] for s in train.samples if s.source == "image"} == {"a", "b"}
    assert {Path(s.path).parts[-4] for s in one.samples if s.source == "image"} == {"a"}
    assert {Path(s.path).parts[-4] for s in val.samples if s.source == "image"} == {"v"}
    # Both parts' annotated frames too (their frame caches never collide although the video ids repeat).
    frames = [s for s in train.samples if s.source == "frame"]
    assert len(frames) == 2 * len([s for s in one.samples if s.source == "frame"]) and len({s.path for s in frames}) == len(frames)


def test_the_embedder_keeps_each_parts_identities_apart(parts: list[Path], tmp_path: Path) -> None:
    cfg = EmbedderDataConfig(train_roots=[str(parts[0]), str(parts[1])], cache_dir=str(tmp_path), num_workers=0,
                             batch_size=2)  # fmt: skip
    _, identities, records = build_train_loader(cfg, image_size=32, seed=0)
    folders = {r.item_id.split("/")[0] for r in records}
    assert folders == {"0", "1"}  # "<part>/<item id>"
    part_of: dict[int, set[str]] = defaultdict(set)
    for r in records:
        part_of[r.instance_id].add(r.item_id.split("/")[0])
    assert all(len(p) == 1 for p in part_of.values())  # an identity never spans two parts
    singles = [build_train_loader(EmbedderDataConfig(train_roots=[str(p)], cache_dir=str(tmp_path), num_workers=0, batch_size=2), 32, 0)[1] for p in parts[:2]]  # fmt: skip
    assert len(identities) == sum(len(s) for s in singles)
