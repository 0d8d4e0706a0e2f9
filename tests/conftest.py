"""Shared fixtures. The real sample is found through IMAGESEARCH_SAMPLE (default ../shared/data/tianchi_sample)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
