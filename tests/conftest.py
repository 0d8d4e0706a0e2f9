"""Shared fixtures. The real sample is found through IMAGESEARCH_SAMPLE (default ../shared/data/tianchi_sample)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the test: a tiny model gains nothing from more, and on a busy
    2-core machine OpenMP barriers make two threads several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sample_root() -> Path:
    env = os.environ.get("IMAGESEARCH_SAMPLE")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data" / "tianchi_sample").resolve()


@pytest.fixture(scope="session")
def tianchi_sample() -> Path:
    """The real Tianchi sample (10 items, 3 videos present). Skips with a reason when absent;
    CI (.ci/run) refuses to start without it, so these tests always run there."""
    root = sample_root()
    if not (root / "image_annotation").is_dir():
        pytest.skip(f"real Tianchi sample not found at {root} (set IMAGESEARCH_SAMPLE)")
    return root
