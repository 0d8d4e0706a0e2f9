"""Writing a whole synthetic split in the competition layout (SPEC §1), deterministically and atomically.

Layout written under the output folder:
    image/<item_id>/<k>.jpg, image_annotation/<item_id>/<k>.json, video/<item_id>.mp4,
    video_annotation/<item_id>.json, and (with `text`) image_text/<item_id>.txt, video_text/<item_id>.txt.
The split is generated into a sibling folder `<out>.tmp-<hex>` and renamed to `<out>` only once complete,
so an interrupted run leaves no half split (a crash removes the temporary folder).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from imagesearch.io import atomic_write
from imagesearch.parallel import map_in_processes
from imagesearch.synthetic.config import SyntheticConfig
from imagesearch.synthetic.items import ItemSpec, plan_items
from imagesearch.synthetic.products import render_product_image
from imagesearch.synthetic.video import render_video

SPLIT_FOLDERS = ("image", "image_annotation", "video", "video_annotation")
TEXT_FOLDERS = ("image_text", "video_text")


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _write_json(path: Path, obj: dict) -> None:
    # ensure_ascii like the real files ("\u65e0\u8896..."); one line, keys in the SPEC's order.
    _write_bytes(path, json.dumps(obj, ensure_ascii=True).encode("ascii"))


def render_item(item: ItemSpec, cfg: SyntheticConfig, seed: int, root: Path) -> int:
    """Write every file of one item (product images, annotations, video, texts) under `root`.

    Each image and the video draw from their own generator seeded by (seed, item index, ...), so the
    files do not depend on the order or the process in which items are rendered.

    Returns:
        The number of product images written.
    """
    img_dir, ann_dir = root / "image" / item.item_id, root / "image_annotation" / item.item_id
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for k in range(item.num_images):
        image, anns = render_product_image(item, k, cfg.image_size, np.random.default_rng([seed, item.index, 3, k]))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError(f"{img_dir / f'{k}.jpg'}: cv2.imencode failed")
        _write_bytes(img_dir / f"{k}.jpg", buf.tobytes())
        _write_json(ann_dir / f"{k}.json", {"item_id": item.item_id, "img_name": f"{k}.jpg", "annotations": anns})
    video = root / "video" / f"{item.item_id}.mp4"
    tmp_video = video.with_name(f".{item.item_id}.tmp.mp4")  # cv2 picks the container from the suffix
    annotation = render_video(item, cfg, tmp_video, np.random.default_rng([seed, item.index, 7]))
    os.replace(tmp_video, video)
    _write_json(root / "video_annotation" / f"{item.item_id}.json", annotation)
    if cfg.text:
        _write_bytes(root / "image_text" / f"{item.item_id}.txt", (item.title + "\n").encode("utf-8"))
        _write_bytes(root / "video_text" / f"{item.item_id}.txt", (item.asr + "\n").encode("utf-8"))
    return item.num_images


def _render_all(items: list[ItemSpec], cfg: SyntheticConfig, seed: int, root: Path) -> None:
    bar = tqdm(total=len(items), desc=f"synthetic {root.name}", unit="item", disable=None, leave=False)
    try:
        map_in_processes(functools.partial(render_item, cfg=cfg, seed=seed, root=root), items, cfg.workers, bar.update)
    finally:
        bar.close()


def generate_split(out_dir: str | Path, num_items: int, seed: int, config: SyntheticConfig | None = None) -> Path:
    """Generate a deterministic synthetic split in the exact competition layout.

    Same (num_items, seed, config) -> byte-identical files, whatever `config.workers`. Different seeds give
    different items and, by default, disjoint item ids (id_offset = (seed % 1000) * 1000).

    Args:
        out_dir: the split folder to create (e.g. data/synthetic/train).
        num_items: items, each with 3-6 product images and one video.
        seed: split seed.
        config: sizes and proportions; None for the defaults (the real data's sizes).

    Returns:
        The split folder.

    Raises:
        FileExistsError: out_dir exists and config.overwrite is false.
    """
    cfg = config if config is not None else SyntheticConfig()
    out = Path(out_dir)
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    items = plan_items(num_items, seed, cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
        for name in SPLIT_FOLDERS + (TEXT_FOLDERS if cfg.text else ()):
            (tmp / name).mkdir()
        _render_all(items, cfg, seed, tmp)
        if out.exists():
            old = out.with_name(f"{out.name}.old-{secrets.token_hex(4)}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def split_counts(root: str | Path) -> dict[str, int]:
    """What a generated split holds: items, images, videos, annotated frames, product and distractor boxes.

    Read back from the files (not from the plan), as a check that they were all written.
    """
    root = Path(root)
    frames = [
        f for p in sorted((root / "video_annotation").glob("*.json")) for f in json.loads(p.read_text())["frames"]
    ]
    image_anns = [a for p in root.glob("image_annotation/*/*.json") for a in json.loads(p.read_text())["annotations"]]
    frame_anns = [a for f in frames for a in f["annotations"]]
    return {
        "items": sum(1 for p in (root / "image").iterdir() if p.is_dir()),
        "images": len(list(root.glob("image/*/*.jpg"))),
        "videos": len(list((root / "video").glob("*.mp4"))),
        "annotated_frames": len(frames),
        "frames_without_product": sum(all(a["instance_id"] == 0 for a in f["annotations"]) for f in frames),
        "image_boxes": len(image_anns),
        "frame_product_boxes": sum(a["instance_id"] > 0 for a in frame_anns),
        "frame_distractor_boxes": sum(a["instance_id"] == 0 for a in frame_anns),
    }
