"""Give freed heap memory back to the operating system after a training run.

A training run allocates and frees many tensor-sized blocks, partly in worker threads that
get their own glibc malloc arenas. glibc keeps freed memory in those arenas, so an idle
trainer holds on to some tens of MB per run it made. ``malloc_trim(0)`` returns it (it
takes well under a millisecond); elsewhere than glibc Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable
from functools import cache

__all__ = ["release_free_memory"]

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim  # musl and others lack it
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True when the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
