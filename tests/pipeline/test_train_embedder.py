"""scripts/train_embedder.py end to end on a tiny generated split: one tiny epoch, resume, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imagesearch.embedder.model import load_embedder
from imagesearch.synthetic import SyntheticConfig, generate_split
from tests.helpers import load_script

REPO = Path(__file__).resolve().parents[2]
TINY = SyntheticConfig(frames=81, width=136, height=240, image_size=160)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("embedder_data")
    generate_split(root / "train", num_items=6, seed=3, config=TINY)
    generate_split(root / "val", num_items=5, seed=4, config=TINY)
    return root / "train", root / "val", root / "cache"


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("config", "loss", "batch"),
    [
        ("embedder.yaml", "triplet", ["data.batch_size=4", "optim.schedule=constant"]),
        ("embedder_arcface.yaml", "arcface", ["data.p=3", "data.k=2"]),
    ],
)
def test_train_resume_and_evaluate(splits, tmp_path: Path, config: str, loss: str, batch: list[str]) -> None:
    train, val, cache = splits
    out = tmp_path / "run"
    main = load_script("train_embedder").main
    common = [
        str(REPO / "configs" / "smoke" / config), f"data.train_roots=[{train}]", f"data.val_root={val}",
        f"data.cache_dir={cache}", f"train.out_dir={out}", "train.max_iters_per_epoch=2", "train.progress=false",
        "train.tensorboard=false", *batch,
    ]  # fmt: skip
    first = main([*common, "train.epochs=1"])
    assert set(first) >= {"train/loss", "val/recall@1", "val/recall@5", "val/recall@20", "val/map"}
    assert (out / "best.pt").is_file() and (out / "config.yaml").is_file()

    main([*common, "train.epochs=2"])  # resumes from last.pt: trains epoch 1 only
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1] and [r["global_step"] for r in rows] == [2, 4]
    assert all(0.0 <= r["val/recall@1"] <= 1.0 and f"train/{loss}" in r for r in rows)
    # An uninterrupted run gives the same numbers: draws and augmentation are seeded. (The LR schedule is
    # constant here, as a cosine over train.epochs=1 and one over 2 epochs differ during epoch 0.)
    if loss == "triplet":
        main([*common, "train.epochs=2", f"train.out_dir={tmp_path / 'straight'}"])
        straight = read_metrics(tmp_path / "straight")
        for key in ("train/loss", "val/recall@1", "val/map"):
            assert [r[key] for r in straight] == [r[key] for r in rows], key

    embedder = load_embedder(out / "last.pt")
    x = torch.randn(2, 3, embedder.cfg.image_size, embedder.cfg.image_size)
    torch.testing.assert_close(embedder.embed(x).norm(dim=1), torch.ones(2))
    again = main([*common, "--evaluate", "--checkpoint", str(out / "last.pt")])
    assert again["val/recall@1"] == pytest.approx(rows[-1]["val/recall@1"])  # the same weights, the same split
    assert json.loads((out / "eval.json").read_text()) == again


def test_evaluate_untrained_baseline(splits, tmp_path: Path) -> None:
    train, val, cache = splits
    metrics = load_script("train_embedder").main(
        [
            str(REPO / "configs" / "smoke" / "embedder.yaml"),
            "--evaluate",
            f"data.val_root={val}",
            f"data.cache_dir={cache}",
            f"train.out_dir={tmp_path}",
            "train.progress=false",
        ]  # fmt: skip
    )
    assert set(metrics) == {"val/recall@1", "val/recall@5", "val/recall@20", "val/map"}
    assert metrics["val/recall@20"] == 1.0  # 5 items: every item is within the top 20 of any ranking
