"""Helpers shared by the scripts in `benchmarks/`: timing, the machine, memory probes, tables, JSON results.

A benchmark script uses them like this:

    from _common import machine_info, time_call, write_result   # or: from benchmarks import _common
    timing = time_call(lambda: index.search(q, 20), warmup=1, repeat=3, sync=_common.cuda_sync(device))
    path = write_result("search_index", "cpu", {"machine": machine_info("cpu"), "results": rows})

and writes `benchmarks/results/<name>-<device>.json` (or `--out`). Every figure comes with the machine
that produced it, so numbers from different machines are never compared by mistake.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagesearch.io import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def time_call(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeat: int = 5,
    budget_s: float = float("inf"),
    sync: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Time `fn()`: `warmup` untimed calls, then up to `repeat` timed calls; report the median.

    Args:
        fn: the work to time (its result is discarded).
        warmup: untimed calls first (thread pools, allocators, CUDA kernels, caches).
        repeat: timed calls at most.
        budget_s: stop repeating once the timed calls have taken this long in total (at least one
            call always runs), so that a slow case (a brute force over 1M vectors) is timed once.
        sync: called after each call before the clock is read, e.g. `torch.cuda.synchronize`, since
            CUDA work is asynchronous.

    Returns:
        {"median_s", "min_s", "times_s" (every timed call), "warmup": warmup}.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        sync()
    times: list[float] = []
    while len(times) < max(1, repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        if sum(times) >= budget_s:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times, "warmup": warmup}


def cuda_sync(device: str | torch.device) -> Callable[[], None] | None:
    """`torch.cuda.synchronize` for a CUDA device, None (nothing to wait for) otherwise."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What produced a figure: CPU model and cores, memory, Python / torch / numpy / faiss versions, GPU.

    Args:
        device: the device the benchmark ran on; for CUDA the GPU's name and memory are added.
    """
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_total_bytes": _proc_kb("/proc/meminfo", "MemTotal"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "device": str(device),
    }
    try:
        import faiss  # an optional extra

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info |= {"gpu": props.name, "gpu_memory_bytes": props.total_memory, "cuda": torch.version.cuda}
    return info


def _proc_kb(path: str, key: str) -> int:
    """A `key: N kB` field of a /proc file in bytes; 0 where /proc is missing (not Linux)."""
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes() -> int:
    """This process's resident memory now (VmRSS), in bytes; 0 where /proc is missing."""
    return _proc_kb("/proc/self/status", "VmRSS")


def release_free_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc `malloc_trim`), so that RSS
    deltas measured next are not hidden by memory that an earlier, freed object left in the heap."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: deltas may then undercount
        pass


@dataclass
class MemoryProbe:
    """Resident-memory change over a block: `with MemoryProbe() as mem: ...`, then `mem.as_dict()`.

    `rss_delta` is VmRSS after minus before (what the block left allocated). `peak_delta` is the peak
    (VmHWM) minus VmRSS before; it is exact only when the kernel lets the peak be reset first (writing
    5 to /proc/self/clear_refs), otherwise None. psutil is not needed. The figures are the process's:
    a concurrent allocation elsewhere in the process would count too.
    """

    before: int = 0
    rss_delta: int = 0
    peak_delta: int | None = None
    _peak_reset: bool = False

    def __enter__(self) -> MemoryProbe:
        release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
            self._peak_reset = True
        except OSError:
            self._peak_reset = False
        self.before = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss_delta = rss_bytes() - self.before
        peak = _proc_kb("/proc/self/status", "VmHWM")
        self.peak_delta = peak - self.before if self._peak_reset and peak else None

    def as_dict(self) -> dict[str, int | None]:
        return {"rss_delta_bytes": self.rss_delta, "peak_rss_delta_bytes": self.peak_delta}


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain-text table: `columns` are (key in the row, header, format spec such as ".3f"); None shows "-"."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else format(row[k], spec) for k, _, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def result_path(name: str, device: str | torch.device) -> Path:
    """The default results file of a benchmark: `benchmarks/results/<name>-<device type>.json`."""
    return RESULTS_DIR / f"{name}-{torch.device(device).type}.json"


def write_result(name: str, device: str | torch.device, payload: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write a benchmark's results as JSON, atomically (a temporary file, then a rename).

    Args:
        name: the benchmark, e.g. "search_index"; stored as `benchmark` in the file.
        device: where it ran; names the default file.
        payload: JSON-serialisable results (rows, args, machine_info).
        out: the file to write instead of `result_path(name, device)`.

    Returns:
        The path written.
    """
    path = Path(out) if out is not None else result_path(name, device)
    record = {"benchmark": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def time_interleaved(
    rows: dict[str, Callable[[], Any]],
    *,
    warmup: int = 1,
    iters: int = 5,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each row, the rows taking turns: round i runs them in an order rotated by i.

    Rows compared against each other should see the same machine: on a shared machine a load change
    then hits every row alike rather than whichever row runs at that moment, and rotating the order
    spreads any "runs right after row X" effect (caches, clocks) over all rows.

    Args:
        rows: name -> the work to time (its result is discarded).
        warmup: untimed rounds first.
        iters: timed rounds; every row gets exactly `iters` times.
        sync: called before the clock starts and before it is read (e.g. `torch.cuda.synchronize`).

    Returns:
        name -> the `iters` timed seconds, in the order they ran.
    """
    sync = sync or (lambda: None)
    names = list(rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + iters):
        shift = i % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            sync()
            start = time.perf_counter()
            rows[name]()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times
