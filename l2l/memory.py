"""Peak memory of a call: resident-set growth on Linux CPUs, allocator peak on CUDA."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

import torch


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_memory_bytes(fn: Callable[[], object], device: str = "cpu") -> int | None:
    """Bytes the call needed at its peak beyond what was resident before it; None where unmeasurable.

    CPU: resets the kernel's high-water mark (``/proc/self/clear_refs``), returns VmHWM − VmRSS.
    CUDA: ``torch.cuda.max_memory_allocated`` growth.
    """
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status_bytes("VmRSS")
    fn()
    peak = _status_bytes("VmHWM")
    return None if before is None or peak is None else max(0, peak - before)
