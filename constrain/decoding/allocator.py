"""The C allocator under a long-running process: freed memory goes back to the system.

Every step allocates tensors of a different size (packed steps of any width, logits rows, KV
buffers that grow), and glibc's malloc, by default, raises its mmap threshold each time a large
block is freed: later blocks of that size then come from the heap, where a few live
allocations pin the free space around them, and resident memory creeps up over thousands of
requests while nothing leaks. A fixed threshold keeps large blocks in mmap (returned on free),
and a trim from the decoding loop, every few seconds at most, hands back the heap's free pages.
Non-glibc systems: both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from typing import Any

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024
_TRIM_EVERY_S = 5.0


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


class Allocator:
    """glibc's malloc, set up once per process (``tune``) and trimmed when asked (``trim``)."""

    def __init__(self) -> None:
        self._libc = _libc()
        self._lock = threading.Lock()
        self._tuned = False
        self._last_trim = 0.0

    def tune(self) -> bool:
        """Large blocks always in mmap; the heap trimmed above 1 MiB of free tail. Best called
        before the model loads; returns whether it applied."""
        with self._lock:
            if self._libc is None or self._tuned:
                return self._tuned
            self._tuned = bool(self._libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
                self._libc.mallopt(_M_TRIM_THRESHOLD, 1024 * 1024))
            return self._tuned

    def trim(self) -> None:
        """Hand free heap memory back (at most every few seconds: it walks the heap)."""
        if self._libc is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last_trim < _TRIM_EVERY_S:
                return
            self._last_trim = now
        self._libc.malloc_trim(0)


ALLOCATOR = Allocator()
