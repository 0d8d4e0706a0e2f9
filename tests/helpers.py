"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from imagesearch.data.records import Split

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """Import `scripts/<name>.py` as a module: the scripts are thin CLIs, not a package, so tests reach
    their `main` this way, as a user runs them."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def perfect_result(split: Split) -> dict[str, Any]:
    """The perfect `result.json` content from a split's annotations (the scorer's tests give it 1.0).

    For each video with a product: its item, the first annotated frame holding it, and both boxes of
    that instance (in that frame and in the first product image showing it).
    """
    out: dict[str, Any] = {}
    for vid, video in split.videos.items():
        for frame in video.frames:
            fb = next((b for b in frame.boxes if b.instance_id in split.instance_to_item), None)
            if fb is None:
                continue
            item_id = split.instance_to_item[fb.instance_id]
            image = next(
                im for im in split.items[item_id].images if fb.instance_id in {b.instance_id for b in im.boxes}
            )
            ib = next(b for b in image.boxes if b.instance_id == fb.instance_id)
            entry = {"img_name": image.stem, "item_box": list(ib.xyxy), "frame_box": list(fb.xyxy)}
            out[vid] = {"item_id": item_id, "frame_index": frame.frame_index, "result": [entry]}
            break
    return out
