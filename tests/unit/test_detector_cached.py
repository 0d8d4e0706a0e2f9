"""Detector training on cached trunk views: the same losses as the live model, views cached once, a run that trains."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from imagesearch.backbones import build_vgg16_features
from imagesearch.config import load_config
from imagesearch.data.samplers import ClassBalancedSampler
from imagesearch.detector.cached import ViewSampler, cached_forward, collate_views, compute_views
from imagesearch.detector.data import collate
from imagesearch.detector.model import build_detector
from imagesearch.detector.train import DetectorRun, build_datasets, detector_forward, run
from imagesearch.synthetic import SyntheticConfig, generate_split

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny split, and a 'pretrained' 1/8-width VGG16-BN trunk saved as a weights file."""
    root = tmp_path_factory.mktemp("cached")
    cfg = SyntheticConfig(frames=41, width=64, height=112, image_size=96, min_images=1, max_images=2, text=False)
    split = generate_split(root / "split", 3, seed=31, config=cfg)
    torch.manual_seed(0)
    weights = root / "tiny_trunk.pth"
    torch.save(build_vgg16_features(batch_norm=True, width_mult=0.125).state_dict(), weights)
    return split, weights


def _cfg(setup: tuple[Path, Path], tmp_path: Path, *extra: str) -> DetectorRun:
    split, weights = setup
    overrides = [f"data.train_roots=[{split}]", "data.val_root=", f"data.cache_dir={tmp_path / 'cache'}",
                 f"model.weights={weights}", "model.freeze_blocks=5", "data.num_workers=0", "data.batch_size=4",
                 "data.budget=8", "data.cached_views=3", f"train.out_dir={tmp_path / 'run'}", "train.progress=false",
                 "train.tensorboard=false", "train.epochs=2", *extra]  # fmt: skip
    return load_config(DetectorRun, REPO / "configs/smoke/detector.yaml", overrides)


def test_cached_losses_equal_the_live_models(setup, tmp_path):
    cfg = _cfg(setup, tmp_path)
    torch.manual_seed(1)
    model = build_detector(cfg.model).train()
    train_set, _ = build_datasets(cfg)
    views = compute_views(model, train_set, 3, 0, tmp_path / "views", "w", cfg.augment, progress=False)
    assert len(views) == len(train_set) and views.conv4[0].shape[0] == 3 and views.conv4[0].dtype == torch.float16
    keys = [(0, 2), (1, 0), (len(train_set) - 1, 1)]
    # The same views, augmented live: the transform re-seeded exactly as compute_views seeds it.
    from imagesearch.detector.cached import _view_seed

    live = []
    for i, v in keys:
        train_set.transform.set_random_seed(_view_seed(0, train_set.samples[i].path, v))
        live.append(train_set[i])
    # Train mode (SSD returns losses only then): the extras' BatchNorm sees the same batch on both paths.
    with torch.no_grad():
        got = cached_forward(model, collate_views([views[k] for k in keys]), torch.device("cpu"))
        want = detector_forward(model, collate(live), torch.device("cpu"))
    for name in want:  # float16 storage of the trunk maps: close, not equal
        torch.testing.assert_close(got[name], want[name], rtol=2e-2, atol=1e-3)


def test_views_are_computed_once_and_reused(setup, tmp_path, caplog):
    cfg = _cfg(setup, tmp_path)
    model = build_detector(cfg.model)
    train_set, _ = build_datasets(cfg)
    first = compute_views(model, train_set, 3, 0, tmp_path / "views", "w", cfg.augment, progress=False)
    files = sorted((tmp_path / "views").glob("*.pt"))
    assert len(files) == len(train_set)
    stamps = [f.stat().st_mtime_ns for f in files]
    again = compute_views(model, train_set, 3, 0, tmp_path / "views", "w", cfg.augment, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read back, not rewritten
    assert all(torch.equal(a, b) for a, b in zip(first.conv5, again.conv5, strict=True))
    other = compute_views(model, train_set, 3, 0, tmp_path / "views", "other weights", cfg.augment, progress=False)
    assert len(list((tmp_path / "views").glob("*.pt"))) == 2 * len(train_set) and len(other) == len(train_set)


def test_view_sampler_draws_views_per_epoch():
    images = ClassBalancedSampler([[0], [1], [0], [1]], 8, seed=0)
    sampler = ViewSampler(images, views=4, seed=5)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0 and len(epoch0) == 8
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and all(0 <= v < 4 for _, v in epoch0 + epoch1)
    assert [i for i, _ in epoch0] == [int(i) for i in images.draw(0)]


def test_a_cached_run_trains_and_refuses_a_trainable_trunk(setup, tmp_path):
    result = run(_cfg(setup, tmp_path))
    assert (tmp_path / "run" / "last.pt").is_file() and result.best_epoch >= 0
    with pytest.raises(ValueError, match="cached_views needs a pretrained, wholly frozen trunk"):
        run(_cfg(setup, tmp_path, "model.freeze_blocks=4", f"train.out_dir={tmp_path / 'run2'}"))


def test_a_fixed_views_seed_shares_the_views_across_training_seeds(setup, tmp_path, caplog):
    views = tmp_path / "cache" / "trunk_views"
    run(_cfg(setup, tmp_path, "train.seed=1", "data.views_seed=0", "train.epochs=1"))
    files = sorted(views.iterdir())
    with caplog.at_level(logging.INFO, logger="imagesearch.detector.cached"):
        run(_cfg(setup, tmp_path, "train.seed=2", "data.views_seed=0", "train.epochs=1", f"train.out_dir={tmp_path / 'r2'}"))
    assert sorted(views.iterdir()) == files and "0 images computed" in caplog.text  # the same views, read back
    run(_cfg(setup, tmp_path, "train.seed=2", "train.epochs=1", f"train.out_dir={tmp_path / 'r3'}"))  # None: train.seed
    assert len(list(views.iterdir())) == 2 * len(files)
