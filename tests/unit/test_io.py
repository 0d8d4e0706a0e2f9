"""`imagesearch.io.atomic_write`: the one writer behind config files, checkpoints, weight files and arrays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from imagesearch.checkpoint import save_checkpoint
from imagesearch.io import atomic_write, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "sub" / "a.json", "old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_the_file_gets_the_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "w.npy", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_only_checkpoints_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    atomic_write_text(tmp_path / "a.txt", "text")
    assert synced == []
    save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(2)})
    assert len(synced) == 1
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["w"], torch.ones(2))


def test_a_writer_that_needs_a_file_object(tmp_path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # np.save on a path would add ".npy" to the temporary name
            np.save(fh, np.arange(3))

    path = atomic_write(tmp_path / "c.npy", write)
    assert np.array_equal(np.load(path), np.arange(3)) and [p.name for p in tmp_path.iterdir()] == ["c.npy"]
