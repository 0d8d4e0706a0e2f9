"""`scripts/train_detector.py main(argv)` on generated splits: train, resume, metrics, checkpoints, inference."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from imagesearch.detector.inference import Detector
from imagesearch.synthetic import SyntheticConfig, generate_split
from tests.helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = REPO_ROOT / "configs" / "smoke" / "detector.yaml"


def _load_script() -> ModuleType:
    return load_script("train_detector")


pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("detector_data")
    cfg = SyntheticConfig(frames=41, width=64, height=112, image_size=96, min_images=1, max_images=2, text=False)
    return generate_split(root / "train", 3, seed=11, config=cfg), generate_split(root / "val", 2, seed=12, config=cfg)


def test_train_then_resume(splits: tuple[Path, Path], tmp_path: Path) -> None:
    main = _load_script().main
    out = tmp_path / "run"
    args = [
        str(SMOKE),
        f"data.train_roots=[{splits[0]}]",
        f"data.val_root={splits[1]}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"train.out_dir={out}",
        "data.budget=8",
        "data.batch_size=4",
        "data.num_workers=0",
        "train.progress=false",
    ]
    first = main([*args, "train.epochs=1"])
    assert first.epochs_trained == 1
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "train.log", "trunk.pth"):
        assert (out / name).is_file(), name
    if importlib.util.find_spec("tensorboard") is not None:  # the optional extra
        assert any((out / "tb").iterdir())  # TensorBoard events
    second = main([*args, "train.epochs=2"])  # resumes from last.pt: only epoch 1 is trained
    assert second.epochs_trained == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert [r["global_step"] for r in rows] == [2, 4]  # 8 samples / batch 4 = 2 steps per epoch
    for row in rows:
        assert 0.0 <= row["val/ap50"] <= 1.0 and row["val/images"] > 0
        assert np.isfinite([row["train/bbox_regression"], row["train/classification"]]).all()
    # The best checkpoint serves the inference API, with the run's model config.
    detector = Detector.from_checkpoint(out / "best.pt")
    assert detector.size == (160, 160)  # configs/smoke/detector.yaml model.size
    frame = np.random.default_rng(0).integers(0, 256, (112, 64, 3), dtype=np.uint8)
    result = detector.detect([frame, frame[:50]])
    assert len(result) == 2 and result[1]["boxes"].shape[1] == 4
    assert (result[1]["boxes"][:, 3] <= 50).all()
    # --evaluate scores a checkpoint without training: best.pt on the validation split gives the AP
    # logged for its epoch, and the per-source APs cover every validation image.
    best_row = max(rows, key=lambda r: r["val/ap50"])
    scores = main([*args, "--evaluate", str(out / "best.pt")])
    assert scores["val/ap50"] == pytest.approx(best_row["val/ap50"], abs=1e-6)
    assert scores["val/images"] == best_row["val/images"] == scores["val/images_frame"] + scores["val/images_image"]
    assert 0.0 <= scores["val/ap50_frame"] <= 1.0 and 0.0 <= scores["val/ap50_image"] <= 1.0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # nothing trained or logged


def test_each_log_line_is_printed_once_and_no_bar_reaches_a_file(
    splits: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Logging set up as every script sets it up (`main` calls `setup_logging`), progress bars left on: on a
    stderr that is not a terminal (a captured log, `make demo > log`) each line appears once and no `\\r`."""
    out = tmp_path / "run"
    _load_script().main([
        str(SMOKE), f"data.train_roots=[{splits[0]}]", f"data.val_root={splits[1]}", f"train.out_dir={out}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.budget=8", "data.batch_size=4", "data.num_workers=0",
        "train.epochs=2", "train.log_every=1", "train.progress=true", "train.tensorboard=false",
    ])  # fmt: skip
    console = capsys.readouterr().err
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "\r" not in log and "\r" not in console
    lines = log.splitlines()
    assert any("epoch 0 iter 1/2" in line for line in lines) and any("epoch 1 done" in line for line in lines)
    printed = Counter(console.splitlines())
    assert {line: printed[line] for line in lines} == dict.fromkeys(lines, 1)  # each file line printed once
