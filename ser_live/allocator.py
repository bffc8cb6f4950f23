"""glibc's allocator, told how a live session uses memory (elsewhere: nothing to do,
other allocators return memory alone).

A live session frees and allocates large arrays over and over: the second opinion's
passing buffers (up to tens of MB, each phrase its own sizes), and the cues' whole-
session copies and sorted values (megabytes, a little larger each time). After the first
large one is freed, glibc raises the size above which an allocation gets pages of its
own, and keeps the later ones in a heap that ``malloc_trim`` cannot shrink past what is
still in use: the holes add up over a long call.
"""

from __future__ import annotations

import sys


def _glibc(function: str):
    """A function of glibc's allocator, or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt")
_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
#: Allocations this large or larger get pages of their own, given back when freed.
LARGE_BUFFER_BYTES = 1 << 20


def give_back_freed_memory() -> None:
    """Return the heap's free pages to the system (about 2 ms)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def keep_large_buffers_off_the_heap() -> None:
    """Give every allocation of ``LARGE_BUFFER_BYTES`` or more pages of its own, for the
    life of the process. Measured: the app's two sides with the second opinion, five
    minutes, 218-271 MB without, 217-237 MB with; one side's 3 h session, log and cues,
    94 -> 141 MB without, 94 -> 124 MB with (docs/benchmarks.md). Process-wide, so set
    only by live engines (the app, ``listen``), not by ``analyze``."""
    if _MALLOPT is not None:
        _MALLOPT(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)
