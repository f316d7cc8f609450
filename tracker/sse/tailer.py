"""Tails the `events` topic from its end and feeds the hub; replays history for Last-Event-ID.

The gateway reads with `Broker.read`, outside any consumer group, so it never
commits offsets and never delays the consumers' retention.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import orjson

from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS, Broker
from tracker.errors import BrokerError, RecordBatchError
from tracker.sse.hub import EventFilter, Hub, LiveEvent, format_event

__all__ = ["BrokerTailer", "parse_last_event_id"]

logger = logging.getLogger(__name__)

PAUSE_SECONDS = 0.002

_EVENT_ID_PATTERN = re.compile(r"(\d{1,9})-(\d{1,19})-(\d{1,9})")


def parse_last_event_id(value: str | None, partitions: int) -> tuple[int, int, int] | None:
    """Return (partition, offset, index) of a `Last-Event-ID`, or None when absent or malformed."""
    if not value:
        return None
    match = _EVENT_ID_PATTERN.fullmatch(value.strip())
    if match is None:
        return None
    partition, offset, index = (int(group) for group in match.groups())
    if partition >= partitions:
        return None
    return partition, offset, index


def decode_message(partition: int, offset: int, payload: bytes) -> list[LiveEvent]:
    """Decode one record batch into live events; a corrupt batch yields none."""
    try:
        documents = decode_record_batch(payload)
    except RecordBatchError:
        logger.warning(
            "Skipped undecodable record batch.", extra={"partition": partition, "offset": offset}
        )
        return []
    events = []
    for index, raw in enumerate(documents):
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(LiveEvent(partition, offset, index, event, raw))
    return events


class BrokerTailer:
    """Reads every partition of a topic from its end on and publishes to a hub."""

    def __init__(
        self,
        broker: Broker,
        hub: Hub,
        *,
        topic: str = TOPIC_EVENTS,
        poll_seconds: float = 0.02,
        read_messages: int = 64,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.broker = broker
        self.hub = hub
        self.topic = topic
        self.poll_seconds = poll_seconds
        self.read_messages = read_messages
        self._sleep = sleep

    async def start_at_end(self) -> None:
        """Set every partition's position to the offset after its newest message."""
        for partition in range(self.broker.partitions):
            end = await self.broker.end_offset(self.topic, partition)
            self.hub.positions[partition] = 0 if end is None else end + 1

    async def poll_once(self) -> int:
        """Read and publish what arrived on each partition; return the messages read."""
        read = 0
        for partition in range(self.broker.partitions):
            start = self.hub.positions.get(partition, 0)
            messages = await self.broker.read(self.topic, partition, start, self.read_messages)
            if not messages:
                continue
            for message in messages:
                self.hub.publish(decode_message(partition, message.offset, message.payload))
                self.hub.positions[partition] = message.offset + 1
                # Let client streams drain between messages, so a burst fills no buffer at once.
                await asyncio.sleep(0)
                while self.hub.needs_pause(time.monotonic()):
                    await self._sleep(PAUSE_SECONDS)
            read += len(messages)
        return read

    async def run(self) -> None:
        """Poll until cancelled; broker errors are logged and retried."""
        await self.start_at_end()
        failures = 0
        while True:
            try:
                read = await self.poll_once()
                failures = 0
            except BrokerError as error:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    logger.error(
                        "Broker read failed; retrying.",
                        extra={"error": str(error)[:300], "failures": failures},
                    )
                read = 0
                await self._sleep(min(5.0, self.poll_seconds * 2 ** min(failures, 8)))
            if read == 0:
                await self._sleep(self.poll_seconds)

    async def replay(
        self,
        tenant: str,
        event_filter: EventFilter,
        after: tuple[int, int, int],
        until: int,
        limit: int,
    ) -> list[str]:
        """Return formatted messages of `tenant` after event `after`, before offset `until`.

        At most `limit` events are returned; a client that fell further behind
        resumes with a gap, from the oldest events it is sent.
        """
        partition, offset, index = after
        messages_out: list[str] = []
        position = offset
        while position < until and len(messages_out) < limit:
            count = min(self.read_messages, until - position)
            messages = await self.broker.read(self.topic, partition, position, count)
            if not messages:
                break
            for message in messages:
                if message.offset >= until:
                    break
                for live in decode_message(partition, message.offset, message.payload):
                    if message.offset == offset and live.index <= index:
                        continue
                    params = live.event.get("params")
                    if not isinstance(params, dict) or params.get("key_prefix") != tenant:
                        continue
                    if event_filter.matches(live.event):
                        messages_out.append(
                            format_event(partition, message.offset, live.index, live.raw)
                        )
            position = messages[-1].offset + 1
        return messages_out[:limit]
