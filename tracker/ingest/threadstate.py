"""Keeping one Python thread state per Robyn worker thread for the life of the thread.

Robyn calls route handlers on its actix worker threads, which Python did not
start. pyo3 enters Python there with `PyGILState_Ensure`, and when that is the
thread's outermost entry, CPython creates a thread state and deletes it again at
the matching `PyGILState_Release`: twice per request (one call creates the
handler's coroutine, one reads its response). A new thread state has no frame
stack yet, so the first Python frame maps a 16 KiB chunk for it with mmap(2),
and deleting the thread state unmaps the chunk. Under wrk load, `perf stat`
counted one mmap and one munmap per request on the worker thread, with an empty
Robyn handler and with ours alike. Each munmap makes the kernel interrupt the
other CPUs that run threads of the process, so that they flush their TLBs.

One more `PyGILState_Ensure` on such a thread, never released, keeps its
thread state, so later entries reuse it and its frame stack. With it, one
ingest process served GET /p at 1.25x of the empty Robyn handler's requests
per second (`bench/results/load-2026-12-05T0806.md`), against 0.79x to 0.88x
in the three load runs before it.

A kept thread state also keeps its contextvars context from one request to
the next. Only the call that creates a guard's coroutine runs on the worker
thread, and it sets no context variable. The coroutine itself runs on the event
loop, in the fresh context Robyn gives each request.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["keep_thread_state", "keeping_thread_state"]

R = TypeVar("R")
A = TypeVar("A")

_thread_flags = threading.local()
# ctypes.pythonapi calls keep the GIL held, which PyGILState_Ensure allows.
_ensure = getattr(ctypes.pythonapi, "PyGILState_Ensure", None)
if sys.implementation.name != "cpython":
    _ensure = None


def keep_thread_state() -> bool:
    """Keep the calling thread's Python thread state until the thread ends.

    Only the first call on a thread does anything. Returns False where the
    interpreter offers no PyGILState API (not CPython).
    """
    if getattr(_thread_flags, "state_kept", False):
        return True
    if _ensure is None:
        return False
    _ensure()
    # Set after the call: the attribute lives in the thread state being kept.
    _thread_flags.state_kept = True
    return True


def keeping_thread_state(function: Callable[[A], R]) -> Callable[[A], R]:
    """Return `function` behind a call that first keeps the calling thread's state.

    For the callable Robyn invokes on its worker threads. `__wrapped__` names
    `function`.
    """
    flags = _thread_flags
    keep = keep_thread_state

    def call(argument: A) -> R:
        if not getattr(flags, "state_kept", False):
            keep()
        return function(argument)

    call.__wrapped__ = function  # type: ignore[attr-defined]
    return call
