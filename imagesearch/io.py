"""Small file helpers every stage shares: content fingerprints of model files (cache keys, stage keys)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["file_fingerprint"]

FULL_HASH_LIMIT = 256 * 2**20  # bytes; bigger files are fingerprinted by size, mtime and their ends
EDGE_BYTES = 2**20


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
