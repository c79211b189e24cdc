"""Keeps the worker's resident memory close to what it actually holds, without paying for fresh
pages on every chunk.

The transfer allocates chunk-sized buffers (8 MiB) in several threads. glibc serves them from
per-thread heaps (arenas) and keeps freed space for reuse, so with its defaults the process's
RSS settled well above the live data (measured: ~300 MiB peak for ~100 MiB of live buffers,
bench_prepare.py). Capping the arenas at two bounds that.

Blocks above the mmap threshold are mapped on malloc and unmapped on free: every chunk then
costs its size in page faults (a 1 MiB threshold took 535,000 minor faults and ~1 CPU-s per GiB
pushed, bench_peers.py). The threshold is therefore set above the largest chunk, and the trim
threshold keeps up to a few chunks of freed heap for the next ones instead of returning them to
the kernel at once: freed chunks are reused, and the heap stays bounded by what the transfers
hold at their peak plus the trim threshold per arena. All is set with ``mallopt`` at start; on a
libc without it (musl, macOS) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 << 20
"""glibc's largest allowed threshold on 64 bits; above a chunk (8 MiB) plus its framing."""
TRIM_THRESHOLD_BYTES = 64 << 20
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
    settings = (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_ARENA_MAX, ARENA_MAX),
    )
    return all([bool(mallopt(option, value)) for option, value in settings])
