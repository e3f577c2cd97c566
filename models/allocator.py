"""Keeping freed memory for reuse in processes that run the model on a CPU (glibc malloc).

A CPU forward pass allocates and frees feature maps of tens of MB at every layer. With glibc's
defaults each of them is a fresh ``mmap`` that the kernel zero-fills page by page and a ``munmap``
afterwards, and Dask makes it worse by starting workers with ``MALLOC_TRIM_THRESHOLD_=65536``.
On this project's 2-core CPU those page faults took about half of the shipped UNet's time. With
big blocks served from the heap and freed memory kept there, the second batch finds its pages
already mapped: the same model ran 1.8x faster per core (``bench/`` has the end-to-end figures).
The cost is that a process keeps its high-water mark of freed memory, bounded by one batch's
activations. One arena: the model runs in Dask's task threads, and glibc gives non-main threads
arenas that cannot hold blocks this big, so they would mmap every one again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap, not a fresh mmap
TRIM_THRESHOLD = 1 << 28  # up to 256 MiB free at the heap top is kept (as fast as keeping it all)
ARENA_MAX = 1

# The same, as environment variables for processes about to start (glibc reads them at start-up).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    "MALLOC_ARENA_MAX": str(ARENA_MAX),
}

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def keep_freed_memory() -> bool:
    """Set this process's malloc as ``MALLOC_ENV`` does for new ones. Threads that already have an
    arena keep it, so call this early. False (and nothing changed) where the C library is not glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, ARENA_MAX), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not ok:
        log.info("mallopt refused a setting; malloc keeps its defaults for those")
    return ok


def release_freed_memory() -> bool:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``), whole pages in the middle
    of the heap included. Kept memory creeps up as a long run's small long-lived allocations pin
    the heap between freed model blocks; an occasional trim bounds that at the price of one batch's
    page faults. False where the C library has no ``malloc_trim``."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _libc_function(name: str):
    """A function of the C library, or None where there is none of that name (not glibc). Looked up
    once per process: ``find_library`` runs ``ldconfig``, and workers trim every few batches."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None
