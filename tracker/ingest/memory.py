"""Allocator setting of an ingest process: large buffers go back to the system when freed.

A /batch body of 1,000 events is about 100 KB, and every request in flight
keeps one until it is parsed. glibc serves blocks from 128 KiB up with their
own mappings, but raises that threshold to the size of each such block freed
(mallopt(3), "M_MMAP_THRESHOLD"). After that, bodies come from the heap, which
rarely shrinks. A fixed threshold of 64 KiB keeps the peak RSS under many
concurrent batches close to the bodies in flight.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["MMAP_THRESHOLD_BYTES", "release_large_buffers"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 64 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def release_large_buffers() -> bool:
    """Set glibc's mmap threshold to 64 KiB; return False where it does not apply.

    It does not apply on a C library other than glibc, or when the operator has
    set `MALLOC_MMAP_THRESHOLD_`, which glibc reads itself at start-up.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        logger.warning(
            "Setting the allocator's mmap threshold failed; set MALLOC_MMAP_THRESHOLD_=65536 "
            "in the environment instead."
        )
        return False
    return True
