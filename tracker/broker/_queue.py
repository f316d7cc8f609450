"""Entries of the producer queue and the futures they resolve."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from tracker.errors import BrokerError

__all__ = ["Entry", "Ticket", "as_bytes"]


class Ticket:
    """The future shared by one or more submits and how many of its entries are not durable yet."""

    __slots__ = ("future", "remaining")

    def __init__(self, entries: int) -> None:
        self.future: Future[None] = Future()
        # A running future ignores cancel(), so one caller that stops waiting (asyncio.wrap_future
        # cancels its source) cannot cancel the future other submits share.
        self.future.set_running_or_notify_cancel()
        self.remaining = entries


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
