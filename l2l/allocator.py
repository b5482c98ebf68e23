"""Keep freed memory in the process: glibc's malloc otherwise returns large blocks to the OS on free.

Every trial allocates buffers of T × B × n numbers (8 MB at 500 × 16 × 256 in float32). glibc serves
blocks above its mmap threshold with fresh pages and unmaps them on free, so each allocation pays one
page fault per 4 KiB page when first written; on the CPU that was half the time of a plain trial
(docs/performance.md). :func:`keep_freed_memory` makes malloc take every block from its heap and keep
up to 2 GiB of freed memory for reuse. The command-line tools call it at start; a script can too.
Set ``L2L_KEEP_FREED_MEMORY=0`` to leave malloc alone. Without glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # mallopt takes an int: 2 GiB is the most it can keep


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to reuse freed memory (no mmap per block, trim above 2 GiB); True if it was applied."""
    if os.environ.get("L2L_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
