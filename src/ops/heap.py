"""Keep freed memory in the C library's heap, so that band-sized temporaries are recycled, not faulted in again.

Inference over row bands (:mod:`src.ops.bands`) allocates and frees the same few megabytes thousands of times per
image. glibc serves an allocation above its mmap threshold with fresh pages from the kernel, and gives the top of
its heap back to the kernel once more than the trim threshold is free; both thresholds start low (128 kB) and only
grow when a large block is freed. Bands of a few megabytes then keep landing on fresh pages, and each 4 kB page
costs a page fault and a zero-fill in the kernel: on a 1-megapixel image up to 2 million faults and about a
quarter of the run in system time. :func:`keep_freed_memory` fixes both thresholds once per process (mmap for
blocks of 32 MB and more, trimming only above 256 MB free), which bounds what the heap keeps to 256 MB of free
memory. It does nothing outside Linux with glibc, and nothing when ``SPANET_KEEP_HEAP=0``. :func:`malloc_trim`
hands free heap pages back at once (before a memory measurement).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they are set (now or before)."""
    if os.environ.get("SPANET_KEEP_HEAP", "1") == "0" or (libc := _glibc()) is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def malloc_trim() -> None:
    """Give the heap's free pages back to the OS now (glibc), so that a resident-memory reading starts from live
    memory; nothing elsewhere."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc has both; another C library may not)
    except (OSError, AttributeError):
        return None
    return libc


__all__ = ["keep_freed_memory", "malloc_trim", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]
