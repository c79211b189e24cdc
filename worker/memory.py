"""Keeps the worker's resident memory close to what it actually holds.

The transfer allocates chunk-sized buffers (16 MiB) in several threads. glibc serves them from
per-thread heaps (arenas) and keeps freed space for reuse, so the process's RSS settles well
above the live data (measured: ~300 MiB peak for ~100 MiB of live buffers, bench_prepare.py).
Serving large blocks with mmap returns them to the kernel on free, and capping the arenas
limits the per-thread heaps. Both are set with ``mallopt`` at start; on a libc without it
(musl, macOS) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
ARENA_MAX = 2


def limit_heap_retention() -> bool:
    """Applies the settings; ``True`` when the C library took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )
