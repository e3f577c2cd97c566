"""Row-wise array work on a scene's merge split across threads of the client.

The merge (``service.scene_features``) runs in one process after a scene's last tile, while the
workers wait. Most of its steps are calls of shapely, pyproj, scipy's kd-tree or numpy on arrays
of tens of thousands of rows, one row independent of the next; those libraries release the GIL
while they work, so slices of the rows run on threads at once. The result is the same as one call
on all the rows, in the same order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

# Rows a slice gets at the least: below this a thread's hand-off costs more than it saves.
MIN_ROWS = 2048

_pool: ThreadPoolExecutor | None = None
_pool_threads = 0
_pool_lock = threading.Lock()
_chosen: ContextVar[int | None] = ContextVar("railsight_merge_threads", default=None)


def merge_threads() -> int:
    """Threads the merge uses: as ``threads_for_merge`` set them in this thread, else the cores this
    process may run on."""
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def threads_for_merge(threads: int | None) -> Iterator[None]:
    """Within the block, this thread's merge uses ``threads`` threads (None: every core). A context
    variable, so two scenes merged at once on two threads (``railsight batch``) each keep their own."""
    token = _chosen.set(threads)
    try:
        yield
    finally:
        _chosen.reset(token)


def _shared_pool(threads: int) -> ThreadPoolExecutor:
    """One pool for the process, made again only when the number of threads asked for changes (the
    old one is left to finish what another merge gave it)."""
    global _pool, _pool_threads
    with _pool_lock:
        if _pool is None or _pool_threads != threads:
            _pool, _pool_threads = ThreadPoolExecutor(threads, thread_name_prefix="railsight-merge"), threads
        return _pool


def row_slices(n: int, min_rows: int | None = None, threads: int | None = None) -> list[slice]:
    """``n`` rows cut into at most ``threads`` (default ``merge_threads()``) contiguous slices of
    at least ``min_rows`` (default ``MIN_ROWS``) each; one slice when there are fewer."""
    parts = max(1, min(threads or merge_threads(), n // max(min_rows or MIN_ROWS, 1)))
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def map_slices(fn: Callable[[slice], Any], slices: Sequence[slice]) -> list[Any]:
    """``fn`` of each slice, in order; on the merge's threads when there are several of each. ``fn``
    must not itself wait on these threads."""
    threads = merge_threads()
    if len(slices) <= 1 or threads <= 1:
        return [fn(s) for s in slices]
    return list(_shared_pool(threads).map(fn, slices))


def by_rows(fn: Callable[..., Any], *arrays: np.ndarray, min_rows: int | None = None) -> Any:
    """``fn(*arrays)`` for a ``fn`` that works row by row (row i of its output, or of each array it
    returns, depends on row i of its inputs alone), computed on slices of the rows at once and
    joined in order."""
    slices = row_slices(len(arrays[0]), min_rows)
    if len(slices) == 1:
        return fn(*arrays)
    parts = map_slices(lambda s: fn(*(a[s] for a in arrays)), slices)
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
    return np.concatenate(parts)
