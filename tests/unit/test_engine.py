"""The training engine: exact resume, checkpoints, best.pt, metrics.jsonl, LR schedules, clipping, AMP.

Everything runs on CPU with a 4 -> 1 linear model on 32 random samples (4 batches of 8).
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from imagesearch.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from imagesearch.config import config_to_dict
from imagesearch.engine import TrainConfig, TrainParts, default_forward, fit, train_one_epoch
from imagesearch.optim import OptimConfig, build_optimizer, build_scheduler
from imagesearch.runtime import resolve_device, seed_everything, set_data_epoch

CKPT_KEYS = {"model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "best_metric", "config", "git_sha"}
CKPT_KEYS |= {"torch_version", "rng", "best_epoch", "metrics"}


class NoisyPairs(Dataset):
    """(x, y) pairs with augmentation noise from numpy and `random`, so a resume must restore those RNGs."""

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.tensor(np.random.normal(0.0, 0.01, size=4), dtype=torch.float32)
        return self.x[i] + noise * random.random(), self.y[i]


class Regressor(nn.Module):
    """Train-mode forward returns a two-term loss dict, like the stage models."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = self.linear(self.drop(x))
        return {"loss_mse": nn.functional.mse_loss(pred, y), "loss_l1": 0.1 * nn.functional.l1_loss(pred, y)}


def make_parts(model_seed: int = 0, dropout: float = 0.0, batches: int = 4, **kwargs) -> TrainParts:
    torch.manual_seed(model_seed)
    model = Regressor(dropout)
    loader = DataLoader(NoisyPairs(8 * batches), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(5))
    return TrainParts(model=model, train_loader=loader, **kwargs)


def make_cfgs(out_dir: Path, **train_kwargs) -> tuple[OptimConfig, TrainConfig, dict]:
    optim = OptimConfig(lr=0.05, momentum=0.9, weight_decay=1e-4, warmup_iters=3, warmup_factor=0.1)
    fields = {"epochs": 2, "device": "cpu", "tensorboard": False, "progress": False, "log_every": 1} | train_kwargs
    train = TrainConfig(out_dir=str(out_dir), **fields)
    return optim, train, {"optim": config_to_dict(optim), "train": config_to_dict(train)}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_resume_after_crash_gives_identical_weights(tmp_path: Path) -> None:
    optim, train, config = make_cfgs(tmp_path / "straight")
    straight = make_parts(dropout=0.2)
    fit(straight, optim, train, config, best_metric="train/loss")

    calls = {"n": 0}

    def crash_in_epoch_1(model, batch, device):
        calls["n"] += 1
        if calls["n"] == 6:  # the second batch of epoch 1: epoch 0 is saved, epoch 1 is half done
            raise RuntimeError("simulated crash")
        return default_forward(model, batch, device)

    optim, train, config = make_cfgs(tmp_path / "resumed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(make_parts(dropout=0.2, forward=crash_in_epoch_1), optim, train, config, best_metric="train/loss")
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    with open(tmp_path / "resumed" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"epoch": 1, "stale": true}\n{"epo')  # as if a crash came after the append, before last.pt

    # A fresh process state: other initial weights, other global RNG streams, new loader and optimizer.
    torch.manual_seed(999), np.random.seed(999), random.seed(999)
    resumed = make_parts(model_seed=7, dropout=0.2)
    result = fit(resumed, optim, train, config, best_metric="train/loss")

    assert result.epochs_trained == 1
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert torch.equal(a["optimizer"]["state"][0]["momentum_buffer"], b["optimizer"]["state"][0]["momentum_buffer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 8
    lines_a, lines_b = read_jsonl(tmp_path / "straight" / "metrics.jsonl"), read_jsonl(result.metrics_path)
    assert [m["epoch"] for m in lines_b] == [0, 1]
    assert [m["train/loss"] for m in lines_a] == [m["train/loss"] for m in lines_b]
    assert not any("stale" in m for m in lines_b)


def test_complete_run_returns_without_training(tmp_path: Path) -> None:
    optim, train, config = make_cfgs(tmp_path, epochs=1)
    first = fit(make_parts(), optim, train, config, best_metric="train/loss")

    def never(model, batch, device):
        raise AssertionError("a complete run must not train again")

    again = fit(make_parts(forward=never), optim, train, config, best_metric="train/loss")
    assert again.epochs_trained == 0
    assert again.best_metric == first.best_metric and again.best_epoch == first.best_epoch == 0
    assert len(read_jsonl(again.metrics_path)) == 1

    optim, train, config = make_cfgs(tmp_path, epochs=1, resume=False)
    fresh = fit(make_parts(), optim, train, config, best_metric="train/loss")
    assert fresh.epochs_trained == 1 and len(read_jsonl(fresh.metrics_path)) == 1  # the old run's line is gone


def test_checkpoints_load_weights_only_with_all_keys(tmp_path: Path) -> None:
    optim, train, config = make_cfgs(tmp_path)
    parts = make_parts()
    fit(parts, optim, train, config, best_metric="train/loss")
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert CKPT_KEYS <= set(ckpt), CKPT_KEYS - set(ckpt)
        assert ckpt["config"] == config
        assert ckpt["torch_version"] == str(torch.__version__)
        assert ckpt["git_sha"] is None or len(ckpt["git_sha"]) == 40
        assert ckpt["scaler"] == {}  # no float16 scaling on CPU
        assert isinstance(ckpt["rng"]["torch"], torch.Tensor) and isinstance(ckpt["rng"]["numpy_keys"], torch.Tensor)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 8
    assert torch.equal(last["model"]["linear.weight"], parts.model.linear.weight.detach())


@pytest.mark.parametrize(
    ("mode", "scores", "best_epoch"),
    [("min", [3.0, 1.0, 2.0], 1), ("max", [1.0, 0.5, 2.0], 2), ("max", [2.0, 1.0, 2.0], 0)],
)
def test_best_checkpoint_follows_metric(tmp_path: Path, mode: str, scores: list[float], best_epoch: int) -> None:
    snapshots: list[dict[str, torch.Tensor]] = []

    def evaluate(model: nn.Module, epoch: int) -> dict[str, float]:
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {"val/score": scores[epoch]}

    optim, train, config = make_cfgs(tmp_path, epochs=3, max_iters_per_epoch=2)
    result = fit(make_parts(evaluate=evaluate), optim, train, config, best_metric="val/score", mode=mode)

    assert result.best_epoch == best_epoch and result.best_metric == scores[best_epoch]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == best_epoch + 1 and best["best_metric"] == scores[best_epoch]
    assert torch.equal(best["model"]["linear.weight"], snapshots[best_epoch]["linear.weight"])
    last = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(last["model"]["linear.weight"], snapshots[2]["linear.weight"])
    assert last["best_metric"] == scores[best_epoch]


def test_metrics_jsonl_config_yaml_and_log(tmp_path: Path) -> None:
    seen: list[dict[str, float]] = []
    config_at_step0: list[dict] = []

    def forward(model, batch, device):
        if not config_at_step0:
            config_at_step0.append(yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8")))
        losses = default_forward(model, batch, device)
        seen.append({k: float(v.detach()) for k, v in losses.items()})
        return losses

    optim, train, config = make_cfgs(tmp_path, epochs=3, eval_every=2, max_iters_per_epoch=2)
    evaluate = lambda model, epoch: {"val/score": 10.0 + epoch}  # noqa: E731
    result = fit(make_parts(forward=forward, evaluate=evaluate), optim, train, config, "val/score", "max")

    assert config_at_step0 == [config]
    lines = read_jsonl(result.metrics_path)
    base = {"epoch", "train/loss", "train/loss_mse", "train/loss_l1", "train/lr", "train/iters", "lr", "time"}
    assert [m["epoch"] for m in lines] == [0, 1, 2] and [m["global_step"] for m in lines] == [2, 4, 6]
    assert [("val/score" in m) for m in lines] == [False, True, True]  # every 2nd epoch and the last
    for epoch, m in enumerate(lines):
        assert base <= set(m)
        batch = seen[2 * epoch : 2 * epoch + 2]
        assert math.isclose(m["train/loss_mse"], sum(b["loss_mse"] for b in batch) / 2, rel_tol=1e-6)
        assert math.isclose(m["train/loss"], sum(b["loss_mse"] + b["loss_l1"] for b in batch) / 2, rel_tol=1e-6)
    assert lines[2]["val/score"] == 12.0 and result.best_epoch == 2
    log = (tmp_path / "train.log").read_text(encoding="utf-8")
    assert "epoch 2 done" in log and "loss_mse=" in log


def test_non_finite_loss_raises_naming_the_term(tmp_path: Path) -> None:
    def forward(model, batch, device):
        losses = default_forward(model, batch, device)
        if model.linear.weight.grad is not None:  # the second step
            losses["loss_bad"] = losses["loss_mse"] * float("nan")
        return losses

    optim, train, config = make_cfgs(tmp_path)
    parts = make_parts(forward=forward)
    with pytest.raises(FloatingPointError, match=r"epoch 0, step 1: .*loss_bad=nan"):
        fit(parts, optim, train, config, best_metric="train/loss")
    assert not (tmp_path / "last.pt").exists()


def test_grad_clip_bounds_the_gradient_norm() -> None:
    model = nn.Linear(3, 1, bias=False)
    nn.init.zeros_(model.weight)
    optimizer = build_optimizer(model.parameters(), OptimConfig(lr=0.1, momentum=0.0, weight_decay=0.0))
    scheduler = build_scheduler(optimizer, OptimConfig(schedule="constant"), iters_per_epoch=1, epochs=1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loader = [torch.ones(2, 3)]
    forward = lambda m, x, d: {"loss_huge": 1e6 * m(x).sum()}  # noqa: E731
    stats = train_one_epoch(
        model, loader, forward, optimizer, scheduler, scaler, torch.device("cpu"), 0, grad_clip=1.0, progress=False
    )
    # d loss / d w = 1e6 * (2, 2, 2): norm 2e6 * sqrt(3) before clipping, 1 after.
    assert math.isclose(stats["train/grad_norm"], 2e6 * math.sqrt(3), rel_tol=1e-5)
    assert math.isclose(float(model.weight.grad.norm()), 1.0, rel_tol=1e-5)
    assert math.isclose(float(model.weight.detach().norm()), 0.1, rel_tol=1e-5)  # one SGD step of lr 0.1


def lrs_over(cfg: OptimConfig, iters_per_epoch: int, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch, epochs)
    lrs = []
    for _ in range(iters_per_epoch * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_cosine_by_hand() -> None:
    # 10 iterations, 4 of warm-up from 0.1 * lr, then cosine over the remaining 6.
    lrs = lrs_over(OptimConfig(lr=0.1, warmup_iters=4, warmup_factor=0.1, schedule="cosine"), 5, 2)
    expected = {0: 0.01, 2: 0.055, 3: 0.0775, 4: 0.1, 7: 0.05, 9: 0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 6))}
    for it, lr in expected.items():
        assert math.isclose(lrs[it], lr, rel_tol=1e-9), (it, lrs[it], lr)
    floored = lrs_over(OptimConfig(lr=0.1, warmup_iters=4, warmup_factor=0.1, min_lr_ratio=0.1), 5, 2)
    assert math.isclose(floored[7], 0.1 * (0.1 + 0.9 * 0.5), rel_tol=1e-9)


def test_step_schedule_drops_at_milestones() -> None:
    lrs = lrs_over(OptimConfig(lr=1.0, schedule="step", milestones=[1, 2], gamma=0.1), 3, 3)
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor([1.0] * 3 + [0.1] * 3 + [0.01] * 3))
    warm = lrs_over(OptimConfig(lr=1.0, schedule="constant", warmup_iters=2, warmup_factor=0.5), 2, 2)
    assert warm == [0.5, 0.75, 1.0, 1.0]


def test_amp_bfloat16_on_cpu(tmp_path: Path) -> None:
    dtypes = []

    def forward(model, batch, device):
        x, y = batch
        pred = model.linear(x)
        dtypes.append(pred.dtype)
        return {"loss_mse": nn.functional.mse_loss(pred.float(), y)}

    optim, train, config = make_cfgs(tmp_path, epochs=1, amp=True, amp_dtype="bfloat16")
    parts = make_parts(forward=forward)
    result = fit(parts, optim, train, config, best_metric="train/loss")
    assert set(dtypes) == {torch.bfloat16}
    assert math.isfinite(result.last_metrics["train/loss"])
    assert parts.model.linear.weight.dtype == torch.float32


def test_max_iters_per_epoch(tmp_path: Path) -> None:
    calls = []

    def forward(model, batch, device):
        calls.append(1)
        return default_forward(model, batch, device)

    optim, train, config = make_cfgs(tmp_path, epochs=2, max_iters_per_epoch=3)
    fit(make_parts(batches=10, forward=forward), optim, train, config, best_metric="train/loss")
    assert len(calls) == 6
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["global_step"] == 6 and last["scheduler"]["last_epoch"] == 6
    assert [m["train/iters"] for m in read_jsonl(tmp_path / "metrics.jsonl")] == [3.0, 3.0]


def test_interrupted_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def torn_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    old = load_checkpoint(path)
    assert old["epoch"] == 1 and torch.equal(old["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_tensorboard_events_hold_the_scalars_and_the_hooks_pictures(tmp_path: Path) -> None:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

    def log_visuals(writer, epoch: int) -> None:  # a stage's pictures go through the engine's writer
        writer.add_image("val/picture", np.full((4, 6, 3), 40 * epoch, np.uint8), epoch, dataformats="HWC")

    optim, train, config = make_cfgs(tmp_path, epochs=2, tensorboard=True)
    parts = make_parts(evaluate=lambda m, e: {"val/score": 0.5}, log_visuals=log_visuals)
    fit(parts, optim, train, config, best_metric="val/score")
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1  # one writer for the run, the hook's pictures included
    acc = accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_mse", "train/loss_l1", "train/lr", "val/score"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert acc.Scalars("val/score")[0].value == 0.5
    assert [e.step for e in acc.Images("val/picture")] == [0, 1]


def test_default_forward_unpacks_tuples_and_dicts() -> None:
    class Echo(nn.Module):
        def forward(self, a, b=None):
            return {"loss_a": a.sum(), "loss_b": torch.tensor(0.0) if b is None else b["t"].sum()}

    device = torch.device("cpu")
    assert float(default_forward(Echo(), (torch.ones(2), {"t": torch.ones(3)}), device)["loss_b"]) == 3.0
    assert float(default_forward(Echo(), {"a": torch.ones(4)}, device)["loss_a"]) == 4.0
    assert float(default_forward(Echo(), torch.ones(5), device)["loss_a"]) == 5.0


def test_set_data_epoch_replays_the_order_and_reaches_samplers() -> None:
    data = TensorDataset(torch.arange(16))

    def order(loader, epoch):
        set_data_epoch(loader, epoch, seed=3)
        return torch.cat([b[0] for b in loader]).tolist()

    a = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
    b = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(2))
    first = order(a, 0)
    assert order(a, 1) != first and order(b, 0) == first and order(a, 0) == first  # depends on (seed, epoch) only
    sampler = DistributedSampler(data, num_replicas=2, rank=0, shuffle=True, seed=0)
    set_data_epoch(DataLoader(data, sampler=sampler, batch_size=4), 3, seed=0)
    assert sampler.epoch == 3


def test_rng_state_round_trip_through_weights_only(tmp_path: Path) -> None:
    seed_everything(4)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(123)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_resolve_device_and_bad_config() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="train.device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer([nn.Parameter(torch.zeros(1))], OptimConfig(name="lamb"))
    with pytest.raises(ValueError, match="optim.schedule"):
        build_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), OptimConfig(schedule="poly"), 1, 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float16_amp_with_grad_scaler_on_cuda(tmp_path: Path) -> None:
    optim, train, config = make_cfgs(tmp_path, epochs=2, device="cuda", amp=True, amp_dtype="float16")
    optim.grad_clip = 1.0
    result = fit(make_parts(), optim, train, config, best_metric="train/loss")
    assert math.isfinite(result.last_metrics["train/loss"])
    assert load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"] > 0
