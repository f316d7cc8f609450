"""The `noop` backend: accepts every publish and drops it, for benchmarks only.

Nothing published here can ever be read back, so connecting logs a warning;
`open_broker` returns this backend only when `BROKER=noop`, never as a fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tracker.broker.base import Broker, Message
from tracker.broker.settings import BrokerSettings

__all__ = ["NoopBroker"]

logger = logging.getLogger(__name__)


class NoopBroker(Broker):
    """Drops every message; reads return nothing and no group owns a partition."""

    backend = "noop"

    def __init__(self, settings: BrokerSettings) -> None:
        self.partitions = settings.partitions
        self.published_messages = 0

    async def connect(self) -> None:
        """Log a warning that every published event will be dropped."""
        logger.warning("Broker backend is noop: every published event is dropped.")

    async def close(self) -> None:
        """Do nothing: there is nothing to release."""

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        """Count the payloads and drop them."""
        self.published_messages += len(payloads)

    async def poll(
        self, topic: str, group: str, partition: int, max_messages: int
    ) -> list[Message]:
        """Return no messages."""
        return []

    async def commit(self, topic: str, group: str, partition: int, offset: int) -> None:
        """Drop the commit."""

    async def committed(self, topic: str, group: str, partition: int) -> int | None:
        """Return None: no group ever committed."""
        return None

    async def end_offset(self, topic: str, partition: int) -> int | None:
        """Return None: every partition is empty."""
        return None

    async def read(
        self, topic: str, partition: int, start: int, max_messages: int
    ) -> list[Message]:
        """Return no messages."""
        return []

    async def join_group(self, topic: str, group: str, member: str) -> None:
        """Do nothing: groups have no members here."""

    async def leave_group(self, topic: str, group: str, member: str) -> None:
        """Do nothing: groups have no members here."""

    async def assigned_partitions(self, topic: str, group: str, member: str) -> list[int]:
        """Return no partitions, so consumers on this backend stay idle."""
        return []

    async def healthy(self) -> bool:
        """Return True: dropping never fails."""
        return True
