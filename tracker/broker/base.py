"""The Broker interface every backend implements, and the record it returns.

A broker stores opaque messages in numbered partitions of named topics. One
message is one record batch (see docs/formats.md), so offsets count batches,
not events. Consumers read through consumer groups whose committed offsets the
broker keeps; the next offset to read after a commit of `n` is `n + 1`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "TOPIC_DEAD_LETTERS",
    "TOPIC_EVENTS",
    "TOPIC_EVENTS_CLEAN",
    "TOPIC_EVENTS_FILTERED",
    "TOPIC_EVENTS_REPLAY",
    "Broker",
    "Message",
]

TOPIC_EVENTS = "events"
TOPIC_EVENTS_CLEAN = "events-clean"
TOPIC_EVENTS_FILTERED = "events-filtered"
# Archived events re-published by `tracker replay`, so the archive never reads them back.
TOPIC_EVENTS_REPLAY = "events-replay"
TOPIC_DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message: its partition, offset, append time and payload bytes."""

    partition: int
    offset: int
    timestamp_ms: int
    payload: bytes


class Broker(abc.ABC):
    """A partitioned, durable log shared by producers and consumer groups.

    Implementations are async so one event loop can drive network backends;
    `publish` returns only after the broker has made the messages durable.
    """

    backend: str
    partitions: int

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and create the stream, topics and partitions if missing."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; pending publishes have finished when this returns."""

    @abc.abstractmethod
    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        """Append payloads to one partition in order; raise BrokerUnavailable if unreachable."""

    @abc.abstractmethod
    async def poll(
        self, topic: str, group: str, partition: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` after the group's committed offset, oldest first."""

    @abc.abstractmethod
    async def commit(self, topic: str, group: str, partition: int, offset: int) -> None:
        """Store `offset` as the last message the group has fully processed."""

    @abc.abstractmethod
    async def committed(self, topic: str, group: str, partition: int) -> int | None:
        """Return the group's committed offset, or None before its first commit."""

    @abc.abstractmethod
    async def end_offset(self, topic: str, partition: int) -> int | None:
        """Return the offset of the newest message in the partition, or None if empty."""

    @abc.abstractmethod
    async def read(
        self, topic: str, partition: int, start: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` from offset `start` on, outside any group."""

    @abc.abstractmethod
    async def join_group(self, topic: str, group: str, member: str) -> None:
        """Register `member` in the group (again, as a heartbeat) so partitions are shared."""

    @abc.abstractmethod
    async def leave_group(self, topic: str, group: str, member: str) -> None:
        """Remove `member` so its partitions pass to the others at once."""

    @abc.abstractmethod
    async def assigned_partitions(self, topic: str, group: str, member: str) -> list[int]:
        """Return the partitions `member` owns now; members that stop heartbeating lose theirs."""

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """Return whether the broker responded to a cheap request just now."""
