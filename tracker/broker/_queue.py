"""Entries of the producer queue and the futures they resolve."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from dataclasses import dataclass

from tracker.errors import BrokerError

__all__ = ["Entry", "Ticket", "as_bytes"]


class Ticket:
    """The future shared by one or more submits and how many of its entries are not durable yet.

    Async callers register an asyncio future per submit in `waiters`. When the
    ticket settles, each event loop gets one cross-thread call that settles all
    of its waiters. `asyncio.wrap_future` would make one such call per waiter.
    """

    __slots__ = ("future", "remaining", "waiters")

    def __init__(self, entries: int) -> None:
        self.future: Future[None] = Future()
        # A running future ignores cancel(), so one caller that stops waiting (asyncio.wrap_future
        # cancels its source) cannot cancel the future other submits share.
        self.future.set_running_or_notify_cancel()
        self.remaining = entries
        self.waiters: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] | None = None

    def add_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Return an asyncio future of `loop` that settles with this ticket; call under the queue lock."""
        waiter = loop.create_future()
        if self.waiters is None:
            self.waiters = {loop: [waiter]}
        else:
            self.waiters.setdefault(loop, []).append(waiter)
        return waiter

    def settle(self, error: BaseException | None) -> None:
        """Settle the future and every waiter with `error`, or with success when it is None."""
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(None)
        waiters, self.waiters = self.waiters, None
        for loop, futures in (waiters or {}).items():
            # A closed loop has no caller left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_waiters, futures, error)


def _settle_waiters(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # its caller was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(None)


@dataclass(slots=True)
class Entry:
    """Queued work for one partition: one encoded record batch, or single events to encode."""

    partition: int
    events: int
    ticket: Ticket
    batch: bytes | None = None
    singles: list[bytes] | None = None
    size: int = 0


def as_bytes(payload: object) -> bytes:
    """Return `payload` as bytes; raise BrokerError for anything that is not a bytes-like object."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise BrokerError(f"expected bytes, got {type(payload).__name__}")
