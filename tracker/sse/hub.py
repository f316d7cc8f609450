"""In-process fan-out of live events to SSE subscribers, by tenant.

Each subscriber has a bounded queue. When a publish finds it full, the
subscriber is marked overflowed and removed at once, so no client has more
than `client_buffer` events queued. One broker message can carry thousands of
events, so the tailer pauses between messages while a queue is more than half
full (`needs_pause`); a client that stays that full for `grace_seconds` is
disconnected, which bounds how long a slow client can delay the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EventFilter",
    "Hub",
    "LiveEvent",
    "Subscription",
    "TooManyConnections",
    "event_id_text",
    "format_event",
]

logger = logging.getLogger(__name__)


def event_id_text(partition: int, offset: int, index: int) -> str:
    """Return the SSE `id:` of event `index` of the message at `offset` of `partition`."""
    return f"{partition}-{offset}-{index}"


def format_event(partition: int, offset: int, index: int, raw: bytes) -> str:
    """Return one SSE message whose data is the event JSON (a single line)."""
    return f"id: {event_id_text(partition, offset, index)}\ndata: {raw.decode('utf-8')}\n\n"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Optional event type and param equality a subscriber asked for."""

    event_type: str | None = None
    param_key: str | None = None
    param_value: str | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.event_type is not None and event.get("event_type") != self.event_type:
            return False
        if self.param_key is not None:
            params = event.get("params") or {}
            value = params.get(self.param_key)
            if value is None or (self.param_value is not None and value != self.param_value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One decoded event with its broker position."""

    partition: int
    offset: int
    index: int
    event: Mapping[str, Any]
    raw: bytes


class TooManyConnections(Exception):
    """The tenant already has the maximum number of open streams."""


@dataclass(eq=False)
class Subscription:
    """One connected client: its tenant, filter and bounded queue of formatted messages."""

    tenant: str
    filter: EventFilter
    capacity: int
    queue: asyncio.Queue[str] = field(init=False)
    overflowed: bool = False
    closed: bool = False
    pressured_since: float | None = None
    """Monotonic time since when the queue has been more than half full, or None."""
    start_positions: dict[int, int] = field(default_factory=dict)
    """Next offset per partition the hub had not published yet when this subscription began."""

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.capacity)


class Hub:
    """Subscribers by tenant and the fan-out of published events to them."""

    def __init__(
        self, *, client_buffer: int, max_connections_per_tenant: int, grace_seconds: float = 0.25
    ) -> None:
        self.client_buffer = client_buffer
        self.grace_seconds = grace_seconds
        self.max_connections_per_tenant = max_connections_per_tenant
        self._subscribers: dict[str, set[Subscription]] = {}
        self.positions: dict[int, int] = {}
        """Next offset per partition that `publish` will deliver, kept by the tailer."""
        self.overflows = 0

    def connection_count(self, tenant: str | None = None) -> int:
        if tenant is not None:
            return len(self._subscribers.get(tenant, ()))
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def subscribe(self, tenant: str, event_filter: EventFilter) -> Subscription:
        """Register a subscriber; raise TooManyConnections at the tenant's limit."""
        subscribers = self._subscribers.setdefault(tenant, set())
        if len(subscribers) >= self.max_connections_per_tenant:
            raise TooManyConnections(tenant)
        subscription = Subscription(
            tenant, event_filter, self.client_buffer, start_positions=dict(self.positions)
        )
        subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        subscribers = self._subscribers.get(subscription.tenant)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.tenant]

    def publish(self, events: Iterable[LiveEvent]) -> None:
        """Queue each event for the subscribers of its tenant whose filter it matches."""
        for live in events:
            params = live.event.get("params")
            tenant = params.get("key_prefix") if isinstance(params, dict) else None
            subscribers = self._subscribers.get(tenant) if isinstance(tenant, str) else None
            if not subscribers:
                continue
            message: str | None = None
            for subscription in list(subscribers):
                if not subscription.filter.matches(live.event):
                    continue
                if message is None:
                    message = format_event(live.partition, live.offset, live.index, live.raw)
                try:
                    subscription.queue.put_nowait(message)
                except asyncio.QueueFull:
                    self._overflow(subscription)

    def needs_pause(self, now: float) -> bool:
        """Return whether a subscriber within its grace period is more than half full.

        Subscribers past the grace period are disconnected here.
        """
        pause = False
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                if subscription.queue.qsize() * 2 <= subscription.capacity:
                    subscription.pressured_since = None
                elif subscription.pressured_since is None:
                    subscription.pressured_since = now
                    pause = True
                elif now - subscription.pressured_since > self.grace_seconds:
                    self._overflow(subscription)
                else:
                    pause = True
        return pause

    def _overflow(self, subscription: Subscription) -> None:
        subscription.overflowed = True
        self.overflows += 1
        self.unsubscribe(subscription)
        # Wake the client's generator so it sends the notice as soon as it is pulled.
        with_room = subscription.queue
        while not with_room.empty():
            with_room.get_nowait()
        with_room.put_nowait("")
        logger.warning("Disconnected slow SSE client.", extra={"key_prefix": subscription.tenant})
