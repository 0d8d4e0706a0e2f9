"""DDP in the engine: world size 2 on CPU (gloo) against one process; `shard_loader`; world size 1 unchanged.

The DDP runs use `torch.multiprocessing.spawn` with torchrun's environment variables set in each child,
so `fit` goes through the same `init_distributed` path as under `torchrun --nproc_per_node 2`.

Why the single-process twin is exact: the loader is not shuffled, so with 2 ranks x batch 2 rank r
gets samples r, r + 2, r + 4, ... (rank 0: [0, 2], [4, 6], ...; rank 1: [1, 3], [5, 7], ...): step t of
the two ranks together covers samples 4t .. 4t + 3, which is batch t of one process with batch 4. Both
loss terms are means over the batch and DDP averages the two ranks' gradients, so each SGD step (with
momentum, weight decay and warm-up) is the same update; the same holds for a custom batch sampler of
pairs ([0, 1], [2, 3], ...), whose batches go to the ranks alternately.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from imagesearch.checkpoint import load_checkpoint
from imagesearch.config import config_to_dict
from imagesearch.distributed import init_distributed, shard_loader
from imagesearch.engine import TrainConfig, TrainParts, default_forward, fit
from imagesearch.optim import OptimConfig
from imagesearch.runtime import set_data_epoch

N = 16  # samples; 4 steps per epoch both ways


def make_dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1)


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = self.linear(x)
        return {"loss_mse": nn.functional.mse_loss(pred, y), "loss_l1": 0.1 * nn.functional.l1_loss(pred, y)}


class PairBatches(Sampler[list[int]]):
    """A custom batch sampler: [0, 1], [2, 3], ...; records the epochs it is given."""

    def __init__(self, n: int) -> None:
        self.n, self.epochs = n, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n // 2

    def __iter__(self):
        return iter([[i, i + 1] for i in range(0, self.n, 2)])


def make_parts(batch: int | None, model_seed: int = 0, calls: list | None = None) -> TrainParts:
    """`batch` None = the custom pair batch sampler; `calls` collects the evaluate hook's epochs."""
    torch.manual_seed(model_seed)
    model, data = Regressor(), make_dataset()
    loader = DataLoader(data, batch_sampler=PairBatches(N)) if batch is None else DataLoader(data, batch_size=batch)

    def evaluate(bare: nn.Module, epoch: int) -> dict[str, float]:
        assert type(bare) is Regressor  # the bare model, never the DDP wrapper
        if calls is not None:
            calls.append(epoch)
        x, y = data.tensors
        return {"val/loss": float(nn.functional.mse_loss(bare.linear(x), y))}

    return TrainParts(model=model, train_loader=loader, evaluate=evaluate)


def make_cfgs(out_dir: Path, epochs: int = 2, tensorboard: bool = False) -> tuple[OptimConfig, TrainConfig, dict]:
    optim = OptimConfig(lr=0.05, momentum=0.9, weight_decay=1e-4, warmup_iters=2, warmup_factor=0.1)
    train = TrainConfig(
        out_dir=str(out_dir), epochs=epochs, device="cpu", tensorboard=tensorboard, progress=False, log_every=1
    )
    return optim, train, {"optim": config_to_dict(optim), "train": config_to_dict(train)}


def _is_write(event: str, args: tuple) -> str | None:
    """The path an audit event writes to, or None."""
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        return os.fsdecode(args[0]) if writing else None
    if event == "os.rename":  # os.replace too; the destination is the file that appears
        return os.fsdecode(args[1])
    if event in ("os.mkdir", "os.remove", "os.rmdir"):
        return os.fsdecode(args[0])
    return None


def _crash_in_epoch_1(model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """Every rank fails at the first step of epoch 1 (4 steps per epoch), after epoch 0 was saved."""
    _crash_in_epoch_1.calls = getattr(_crash_in_epoch_1, "calls", 0) + 1
    if _crash_in_epoch_1.calls == 5:
        raise RuntimeError("simulated crash")
    return default_forward(model, batch, device)


def _worker(rank: int, ports: tuple[int, int], tmp: str) -> None:
    """One rank: run A (fit creates the group), then B and C in a group made here; save what is checked."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), WORLD_SIZE="2")
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    root, writes = Path(tmp), []
    runs = str(root / "runs")

    def audit(event: str, args: tuple) -> None:
        path = _is_write(event, args)  # string checks only: a syscall in an audit hook could recurse
        if path is not None and os.path.abspath(path).startswith(runs):
            writes.append(path)

    sys.addaudithook(audit)  # sees every file this process creates, renames or removes under runs/
    out: dict[str, Any] = {"eval_calls": []}
    # A: element sharding; fit initialises the group from the environment and destroys it.
    parts = make_parts(batch=2, calls=out["eval_calls"])
    result = fit(parts, *make_cfgs(root / "runs" / "A", tensorboard=True), best_metric="val/loss")
    out |= {"A": parts.model.state_dict(), "A_metrics": result.last_metrics, "A_group_left": dist.is_initialized()}
    # B and C: a group made by the caller, which fit must leave in place.
    os.environ["MASTER_PORT"] = str(ports[1])
    out["made_group"] = init_distributed("gloo")
    parts = make_parts(batch=None)
    fit(parts, *make_cfgs(root / "runs" / "B"), best_metric="val/loss")
    out |= {"B": parts.model.state_dict(), "B_epochs": parts.train_loader.batch_sampler.epochs}
    crashing = make_parts(batch=2)
    crashing.forward = _crash_in_epoch_1
    try:
        fit(crashing, *make_cfgs(root / "runs" / "C"), best_metric="val/loss")
    except RuntimeError as exc:
        out["C_crash"] = str(exc)
    parts = make_parts(batch=2, model_seed=7)  # other initial weights: the resume must overwrite them
    result = fit(parts, *make_cfgs(root / "runs" / "C"), best_metric="val/loss")
    out |= {"C": parts.model.state_dict(), "C_trained": result.epochs_trained, "BC_group_kept": dist.is_initialized()}
    dist.destroy_process_group()
    out["writes"] = writes
    torch.save(out, Path(tmp) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=((_free_port(), _free_port()), str(tmp)), nprocs=2, join=True)
    return tmp, torch.load(tmp / "rank0.pt", weights_only=False), torch.load(tmp / "rank1.pt", weights_only=False)


def test_only_rank_0_writes_and_evaluates(ddp_run: tuple[Path, dict, dict]) -> None:
    tmp, r0, r1 = ddp_run
    run_a = tmp / "runs" / "A"
    assert {p.name for p in run_a.iterdir()} == {
        "config.yaml",
        "train.log",
        "tb",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
    }
    assert r1["writes"] == []  # not one file created, renamed or removed by rank 1
    written = {Path(p).name for p in r0["writes"]}
    assert {"metrics.jsonl", "config.yaml", "train.log", "tb", "A", "B", "C"} <= written  # the hook works
    assert [m["epoch"] for m in _lines(run_a / "metrics.jsonl")] == [0, 1]  # one line per epoch, not per rank
    assert r0["eval_calls"] == [0, 1] and r1["eval_calls"] == []
    assert r1["A_metrics"]["val/loss"] == r0["A_metrics"]["val/loss"]  # shared with the waiting rank
    # fit tears down the group it made, and leaves alone a group its caller made.
    assert (r0["A_group_left"], r0["made_group"], r0["BC_group_kept"]) == (False, True, True)


def test_ddp_equals_one_process_with_the_global_batch(ddp_run: tuple[Path, dict, dict], tmp_path: Path) -> None:
    tmp, r0, r1 = ddp_run
    single = make_parts(batch=4)
    result = fit(single, *make_cfgs(tmp_path / "single"), best_metric="val/loss")
    expected = single.model.state_dict()
    for run in ("A", "B"):  # element sharding of a sampler, and batch sharding of a custom batch sampler
        for key, value in expected.items():
            torch.testing.assert_close(r0[run][key], value, rtol=1e-6, atol=1e-6, msg=f"{run} {key}")
            assert torch.equal(r1[run][key], r0[run][key]), "DDP ranks must hold identical weights"
    # The epoch losses, averaged over ranks, equal the single process's (each step's mean over 4 samples).
    ddp_lines, single_lines = (
        _lines(tmp / "runs" / "A" / "metrics.jsonl"),
        _lines(tmp_path / "single" / "metrics.jsonl"),
    )
    for d, s in zip(ddp_lines, single_lines, strict=True):
        for key in ("train/loss", "train/loss_mse", "train/loss_l1", "val/loss", "lr", "global_step"):
            assert d[key] == pytest.approx(s[key], rel=1e-6, abs=1e-7), key
    assert result.last_metrics["train/iters"] == r0["A_metrics"]["train/iters"] == 4
    # The checkpoint has the single-process layout (no "module." prefix) and the same values.
    ddp_ckpt, single_ckpt = load_checkpoint(tmp / "runs" / "A" / "last.pt"), load_checkpoint(result.last_checkpoint)
    assert list(ddp_ckpt["model"]) == list(single_ckpt["model"]) == ["linear.weight", "linear.bias"]
    for key, value in single_ckpt["model"].items():
        torch.testing.assert_close(ddp_ckpt["model"][key], value, rtol=1e-6, atol=1e-6)
    assert r0["B_epochs"] == r1["B_epochs"] == [0, 1]  # set_epoch reaches the wrapped batch sampler


def test_ddp_resume_matches_a_straight_run(ddp_run: tuple[Path, dict, dict]) -> None:
    tmp, r0, r1 = ddp_run
    assert r0["C_crash"] == r1["C_crash"] == "simulated crash"
    assert r0["C_trained"] == r1["C_trained"] == 1
    for key, value in r0["A"].items():
        assert torch.equal(r0["C"][key], value) and torch.equal(r1["C"][key], value), key
    ckpt = load_checkpoint(tmp / "runs" / "C" / "last.pt")
    assert len(ckpt["rng_ranks"]) == 2 and not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])


class EpochBatches(Sampler[list[int]]):
    """Six batches of two whose grouping changes with the epoch, like a seeded P x K sampler."""

    def __init__(self, n_batches: int = 6) -> None:
        self.n_batches, self.epoch = n_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        order = torch.randperm(2 * self.n_batches, generator=torch.Generator().manual_seed(self.epoch)).tolist()
        return iter([order[i : i + 2] for i in range(0, len(order), 2)])


def test_shard_loader_splits_a_custom_batch_sampler() -> None:
    data = TensorDataset(torch.arange(12))
    loader = DataLoader(data, batch_sampler=EpochBatches())
    shards = [shard_loader(loader, rank=r, world_size=3) for r in range(3)]
    for epoch in (0, 1):
        for shard in (loader, *shards):
            set_data_epoch(shard, epoch, seed=0)
        full = [b[0].tolist() for b in loader]
        got = [[b[0].tolist() for b in shard] for shard in shards]
        assert [len(shard) for shard in shards] == [len(g) for g in got] == [2, 2, 2]
        assert got == [full[r::3] for r in range(3)]  # rank r: batches r, r + 3 of the epoch, intact
        assert sorted(b for g in got for b in g) == sorted(full)  # disjoint, and together all six
        assert sorted(i for b in full for i in b) == list(range(12))
    assert full != [b[0].tolist() for b in DataLoader(data, batch_sampler=EpochBatches())]  # epoch 1 differs

    uneven = DataLoader(data, batch_sampler=PairBatches(10))  # 5 batches on 2 ranks: one is repeated
    assert [[b[0].tolist() for b in shard_loader(uneven, r, 2)] for r in (0, 1)] == [
        [[0, 1], [4, 5], [8, 9]],
        [[2, 3], [6, 7], [0, 1]],
    ]


def test_shard_loader_splits_samples_and_keeps_the_loader_settings() -> None:
    data = TensorDataset(torch.arange(10))

    def collate(items: list) -> list[int]:
        return [int(t[0]) for t in items]

    loader = DataLoader(data, batch_size=2, collate_fn=collate)
    assert [list(shard_loader(loader, r, 2)) for r in (0, 1)] == [
        [[0, 2], [4, 6], [8]],
        [[1, 3], [5, 7], [9]],
    ]
    # A shuffle drawn from the global RNG (seeded per rank) would differ between ranks; the shards must not.
    shuffled = DataLoader(
        TensorDataset(torch.arange(12)), batch_size=3, shuffle=True, drop_last=True, collate_fn=collate
    )
    shares = []
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        shard = shard_loader(shuffled, rank, 2)
        set_data_epoch(shard, 3, seed=0)
        shares.append([i for b in shard for i in b])
        assert shard.drop_last and shard.batch_size == 3 and shard.collate_fn is collate
    assert sorted(shares[0] + shares[1]) == list(range(12)) and shares[0] != list(range(0, 12, 2))
    assert shard_loader(loader, 0, 1) is loader
    with pytest.raises(TypeError, match="must be a DataLoader"):
        shard_loader([torch.zeros(2)], 0, 2)


def test_world_size_1_under_torchrun_env_is_a_plain_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = make_parts(batch=4)
    fit(plain, *make_cfgs(tmp_path / "plain"), best_metric="val/loss")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    launched = make_parts(batch=4)
    assert init_distributed() is False and shard_loader(launched.train_loader) is launched.train_loader
    fit(launched, *make_cfgs(tmp_path / "launched"), best_metric="val/loss")
    assert not dist.is_initialized()
    for key, value in plain.model.state_dict().items():
        assert torch.equal(launched.model.state_dict()[key], value), key
    assert "rng_ranks" not in load_checkpoint(tmp_path / "launched" / "last.pt")
