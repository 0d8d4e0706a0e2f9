"""Small file helpers every stage shares: atomic writes, and content fingerprints of model files (cache keys,
stage keys)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "file_fingerprint"]

FULL_HASH_LIMIT = 256 * 2**20  # bytes; bigger files are fingerprinted by size, mtime and their ends
EDGE_BYTES = 2**20


def atomic_write(path: str | Path, write: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Write a file atomically: `write(tmp)` fills a temporary file in the same folder, then `os.replace`.

    A crash or a full disk mid-write leaves the previous file intact and no temporary file behind. The
    temporary file is created under the umask (not mkstemp's private 0600, which would stick to the
    output: outputs are meant to be read by others) with a unique name, so concurrent writers never
    share one.

    Args:
        path: the file to write; its folder is created when missing.
        write: writes the whole content to the path it is given, e.g. `lambda tmp: torch.save(state, tmp)`.
        fsync: flush the data to disk before the rename (checkpoints: after a power cut the rename can
            otherwise survive while the data does not, leaving an empty file).

    Returns:
        `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file atomically (`atomic_write`); returns `path`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@lru_cache(maxsize=256)
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(2**22), b""):
                h.update(block)
            return f"sha1:{h.hexdigest()}"
        h.update(fh.read(EDGE_BYTES))
        fh.seek(size - EDGE_BYTES)
        h.update(fh.read(EDGE_BYTES))
    return f"edges:{size}:{mtime_ns}:{h.hexdigest()}"


def file_fingerprint(path: str | Path) -> str:
    """A content fingerprint of a model file, for cache keys.

    Files up to 256 MiB: the SHA-1 of all their bytes ("sha1:<hex>"). Bigger files: their size,
    mtime (ns) and the SHA-1 of their first and last MiB ("edges:<size>:<mtime>:<hex>"), since hashing
    a multi-GB file on every run would cost more than the cache saves. Memoised per (path, size, mtime).

    Raises:
        FileNotFoundError: no such file.
    """
    st = Path(path).stat()
    return _fingerprint(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
