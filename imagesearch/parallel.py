"""Process pools for CPU-bound picture work (decoding, cutting, rendering), one picture task per call.

`map_in_processes` is the one place that starts them, for the crop cache (`data.crops`) and the synthetic
generator (`synthetic.split`). It imports neither torch nor the rest of the package, so a worker that
unpickles its function loads only that function's module: the generator's workers stay free of torch.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["map_in_processes"]


def _one_opencv_thread() -> None:
    import cv2

    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would oversubscribe the cores


def map_in_processes(
    fn: Callable[[T], R], tasks: Sequence[T], workers: int, on_done: Callable[[], object] | None = None
) -> list[R]:
    """`fn` of every task, results in task order, whatever order the tasks finish in.

    Args:
        fn: a picklable function (module level, or a `functools.partial` of one).
        tasks: its arguments, one call each.
        workers: processes; below 2 (or a single task) every call runs in this process, in turn.
        on_done: called once per finished task (a progress bar's `update`).

    Processes are spawned, not forked: a forked child of a process that holds torch's or OpenCV's thread
    pools can hang. An executor, not a `multiprocessing.Pool`: a worker that dies (killed for memory)
    raises `BrokenProcessPool` instead of hanging; on any error the tasks not started are cancelled.
    """
    done = on_done or (lambda: None)
    if workers < 2 or len(tasks) < 2:
        out = []
        for task in tasks:
            out.append(fn(task))
            done()
        return out
    results: list[R | None] = [None] * len(tasks)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_one_opencv_thread)
    try:
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done()
    finally:
        pool.shutdown(cancel_futures=True)
    return results  # type: ignore[return-value]
