"""The on-disk caches a user accumulates: find them, say what made each and when, and prune them.

Three kinds, told apart by the file that marks a complete folder (written last by their builders):
- `gallery` (`matching.gallery`): `<cache_dir>/<16 hex>/parts.npz` + `meta.json`; what made it is
  the `description` at the head of `meta.json` (settings, features, split fingerprint, model files);
- `crops` (`data.crops`): `<cache_dir>/<12 hex>/crops.jsonl` + `img/<shard>/`; what made it is `meta.json`
  (version, split, margin, max_side) where the cache has one, and the crop counts of its index. A
  version 1 cache (no "version"; one flat `img/`, made with or without distractors) is never read again;
- `detector_frames` (`detector.data`): `<cache_dir>/<video id>_<12 hex>/frames.json` + `<i>.jpg`;
- `detector_views` (`detector.cached`, training on cached trunk outputs): `<cache_dir>/trunk_views/`
  of `<20 hex>.pt` files, one per image (keyed by image, trunk weights and augmentation), written one
  by one: the folder is one entry, created = its newest file; only an age rule prunes it, as a whole.
A folder named like one of the first three beside complete ones but without its marker is an
interrupted build (`complete` False): it is never read again, only wastes space.

Pruning (`select_prunable`) works within groups of caches that stand for the same thing, so that
"keep the newest N" never drops one split's cache because another split's is newer:
- gallery: the same cache folder, split (fingerprint) and box source: each retrained checkpoint or
  feature setting adds one;
- crops: the same cache folder and split, whatever the geometry or version (so "keep the newest"
  drops version 1 caches once a current one is built; a cache without `meta.json`, written before it
  existed, is a group of its own: only an age rule prunes it);
- detector_frames: the same cache folder and video (a re-encoded or re-annotated video adds one).
Incomplete folders are always prunable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "CacheEntry", "delete_caches", "find_caches", "format_caches", "select_prunable"]

KINDS = ("gallery", "crops", "detector_frames", "detector_views")
_NAMES = {
    "gallery": re.compile(r"[0-9a-f]{16}"),
    "crops": re.compile(r"[0-9a-f]{12}"),
    "detector_frames": re.compile(r".+_[0-9a-f]{12}"),
}
_MARKERS = {"gallery": "meta.json", "crops": "crops.jsonl", "detector_frames": "frames.json"}
_VIEW_FILE = re.compile(r"[0-9a-f]{20}\.pt")
_HEAD_BYTES = 1 << 20  # a gallery's description is at the head of a meta.json that also lists every row


@dataclass(frozen=True)
class CacheEntry:
    """One cache folder.

    Attributes:
        kind: "gallery", "crops" or "detector_frames".
        path: the folder (deleting it removes the cache).
        bytes: total size of its files.
        files: number of files.
        created: when it was completed (its marker's mtime; for an incomplete folder, its newest file's),
            seconds since the epoch.
        complete: False for an interrupted build.
        description: what made it (see the module docstring); {} when unknown.
        group: entries of one group stand for the same thing; "keep the newest N" counts within it.
    """

    kind: str
    path: Path
    bytes: int
    files: int
    created: float
    complete: bool
    description: dict[str, Any] = field(default_factory=dict)
    group: str = ""


def find_caches(root: str | Path) -> list[CacheEntry]:
    """Every cache folder under `root` (searched recursively; `root` may itself be one), oldest first.

    Args:
        root: e.g. `data/cache`, or a run folder that holds `cache/`.

    Returns:
        The entries, sorted by (created, path).
    """
    root = Path(root)
    if (kind := _kind_of_dir(root)) is not None:
        return [_entry(root, kind, complete=True)]
    entries: list[CacheEntry] = []
    for folder, dirs, _ in os.walk(root):
        here = Path(folder)
        kinds = {d: _kind_of_dir(here / d) for d in dirs}
        complete_kinds = {k for k in kinds.values() if k is not None}
        for d, kind in kinds.items():
            if kind is not None:
                entries.append(_entry(here / d, kind, complete=True))
            elif (partial := _incomplete_kind(here / d, complete_kinds)) is not None:
                entries.append(_entry(here / d, partial, complete=False))
            else:
                continue
            dirs.remove(d)  # a cache folder holds no further caches
    return sorted(entries, key=lambda e: (e.created, str(e.path)))


def _kind_of(files: Sequence[str], dirs: Sequence[str], name: str) -> str | None:
    names = set(files)
    if "parts.npz" in names and "meta.json" in names:
        return "gallery"
    if "crops.jsonl" in names:
        return "crops"
    if "frames.json" in names and _NAMES["detector_frames"].fullmatch(name):
        return "detector_frames"
    if name == "trunk_views" and names and all(_VIEW_FILE.fullmatch(f) or f.startswith(".") for f in names):
        return "detector_views"
    return None


def _kind_of_dir(path: Path) -> str | None:
    try:
        with os.scandir(path) as it:
            listing = list(it)
    except OSError:
        return None
    files = [e.name for e in listing if e.is_file()]
    return _kind_of(files, [e.name for e in listing if e.is_dir()], path.name)


def _incomplete_kind(path: Path, beside: set[str]) -> str | None:
    """The kind of an interrupted build: named like a complete cache beside it, without its marker."""
    for kind in beside & _NAMES.keys():
        if _NAMES[kind].fullmatch(path.name) and not (path / _MARKERS[kind]).exists():
            return kind
    return None


def _walk_size(path: Path) -> tuple[int, int, float]:
    total = count = 0
    newest = 0.0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:  # removed while we looked
                continue
            total, count, newest = total + st.st_size, count + 1, max(newest, st.st_mtime)
    return total, count, newest


def _entry(path: Path, kind: str, complete: bool) -> CacheEntry:
    size, count, newest = _walk_size(path)
    marked = complete and kind in _MARKERS
    created = (path / _MARKERS[kind]).stat().st_mtime if marked else (newest or path.stat().st_mtime)
    description = _describe(path, kind) if complete else {}
    return CacheEntry(kind, path, size, count, created, complete, description, _group(path, kind, description))


def _describe(path: Path, kind: str) -> dict[str, Any]:
    try:
        if kind == "gallery":
            return _gallery_description(path / "meta.json")
        if kind == "crops":
            meta = path / "meta.json"
            desc = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
            crops = frame_crops = 0
            with open(path / "crops.jsonl", "rb") as fh:  # line by line: a training part's index is ~300 MB
                for line in fh:
                    crops += 1
                    frame_crops += b'"source": "frame"' in line
            return {**desc, "crops": crops, "frame_crops": frame_crops}
        if kind == "detector_views":
            return {"images": sum(1 for f in os.listdir(path) if _VIEW_FILE.fullmatch(f))}
        names = json.loads((path / "frames.json").read_text(encoding="utf-8"))
        return {"video_id": path.name.rsplit("_", 1)[0], "frames": len(names)}
    except (OSError, ValueError) as exc:  # a damaged cache is listed (and prunable), not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


def _gallery_description(meta: Path) -> dict[str, Any]:
    """`meta.json`'s "description" without parsing its rows (tens of MB for a full split)."""
    with open(meta, encoding="utf-8") as fh:
        head = fh.read(_HEAD_BYTES)
    start = head.find('"description":')
    if start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(head, head.index("{", start))
            return value
        except ValueError:  # longer than the head: read it all
            pass
    return json.loads(meta.read_text(encoding="utf-8")).get("description", {})


def _group(path: Path, kind: str, description: dict[str, Any]) -> str:
    parent = str(path.parent)
    if kind == "gallery":
        boxes = description.get("gallery", {}).get("boxes", "")
        return f"{parent}|split={description.get('split', '?')}|boxes={boxes}"
    if kind == "crops":
        if "split" not in description:
            return f"{parent}|{path.name}"  # no metadata: its own group
        return f"{parent}|split={description['split']}"
    if kind == "detector_views":
        return parent
    return f"{parent}|video={description.get('video_id', path.name)}"


def select_prunable(
    entries: Iterable[CacheEntry],
    keep_newest: int | None = None,
    older_than: float | None = None,
    kinds: Sequence[str] | None = None,
) -> list[CacheEntry]:
    """The entries a prune removes: outside the newest `keep_newest` of their group and/or older than a time.

    With both rules an entry is removed only when both select it (each rule keeps what it keeps);
    with neither, only incomplete folders are removed. Incomplete folders are always removed.

    Args:
        entries: from `find_caches`.
        keep_newest: keep this many of each group, newest first (>= 0).
        older_than: remove entries created before this time (seconds since the epoch).
        kinds: only these kinds (None: all).

    Returns:
        The entries to remove, oldest first.
    """
    if keep_newest is not None and keep_newest < 0:
        raise ValueError(f"keep_newest must be >= 0, got {keep_newest}")
    chosen = [e for e in entries if kinds is None or e.kind in kinds]
    beyond: set[Path] = set()
    groups: dict[tuple[str, str], list[CacheEntry]] = defaultdict(list)
    for e in chosen:
        if e.complete:
            groups[(e.kind, e.group)].append(e)
    for members in groups.values():
        members.sort(key=lambda e: (e.created, str(e.path)), reverse=True)
        beyond.update(e.path for e in members[keep_newest or 0 :] if keep_newest is not None)

    def removed(e: CacheEntry) -> bool:
        if not e.complete:
            return True
        rules = []
        if keep_newest is not None:
            rules.append(e.path in beyond)
        if older_than is not None:
            rules.append(e.created < older_than)
        return bool(rules) and all(rules)

    return sorted((e for e in chosen if removed(e)), key=lambda e: (e.created, str(e.path)))


def delete_caches(entries: Iterable[CacheEntry]) -> int:
    """Delete the entries' folders; returns the bytes freed."""
    freed = 0
    for e in entries:
        shutil.rmtree(e.path)
        freed += e.bytes
    return freed


def _summary(e: CacheEntry) -> str:
    d = e.description
    if not e.complete:
        return "incomplete (interrupted build)"
    if "error" in d:
        return d["error"]
    if e.kind == "gallery":
        feats = d.get("features", {})
        files = ", ".join(Path(f).name for f in d.get("files", {}))
        return f"boxes={d.get('gallery', {}).get('boxes')} features={feats.get('kind', '?')} files=[{files}]"
    if e.kind == "crops":
        where = f"split={d['split']} " if "split" in d else "(no meta.json) "
        if "version" not in d:
            where = f"version 1, never read: {where}"
        return f"{where}{d.get('crops', 0)} crops ({d.get('frame_crops', 0)} from frames)"
    if e.kind == "detector_views":
        return f"trunk views of {d.get('images')} images (created = the newest)"
    return f"video {d.get('video_id')}: {d.get('frames')} frames"


def format_caches(entries: Sequence[CacheEntry], each_frame_folder: bool = False) -> str:
    """A table of the entries, one line each; detector frame folders one line per cache folder unless
    `each_frame_folder` (a training part has thousands)."""
    rows: list[tuple[str, str, str, str, str]] = []
    frames: dict[Path, list[CacheEntry]] = defaultdict(list)
    for e in entries:
        if e.kind == "detector_frames" and not each_frame_folder:
            frames[e.path.parent].append(e)
            continue
        rows.append((e.kind, _when(e.created), _mb(e.bytes), str(e.files), f"{e.path}  {_summary(e)}"))
    for parent, members in frames.items():
        size, count = sum(m.bytes for m in members), sum(m.files for m in members)
        span = f"{_when(min(m.created for m in members))} .. {_when(max(m.created for m in members))}"
        broken = sum(not m.complete for m in members)
        what = f"{parent}/  {len(members)} video folders" + (f", {broken} incomplete" if broken else "")
        rows.append(("detector_frames", span, _mb(size), str(count), what))
    header = ("kind", "created", "MB", "files", "folder  what made it")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]) for r in [header, *rows]]
    total = sum(e.bytes for e in entries)
    lines.append(f"{len(entries)} cache folders, {_mb(total)} MB")
    return "\n".join(lines)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f}"
