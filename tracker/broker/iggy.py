"""The `iggy` backend: Apache Iggy over TCP through the `apache-iggy` SDK.

On connect the client logs in and creates the stream, the platform's topics
and their partitions if they are missing. Topics are created so that the
server writes each acknowledged message to stable storage (see
`_create_topic`). Each record batch is one Iggy message sent to an explicit
partition.

Group offsets live on the server: a group is an Iggy consumer named after
the group, whose stored offset per partition is the group's committed offset.
The SDK 0.9 client has no method that stores or reads an offset of a regular
consumer. So `commit` and `committed` send the server's StoreConsumerOffset
(code 121) and GetConsumerOffset (code 120) commands through
`send_binary_request`, encoded as the server's binary protocol defines them.

Membership uses the same rule as the local log (sorted live members, every
n-th partition) so both backends assign partitions alike. Heartbeats are
messages on the `group-members` topic, and a member is live while its last
heartbeat is younger than the session timeout.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import struct
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import apache_iggy as iggy
import orjson

from tracker.broker.base import (
    TOPIC_DEAD_LETTERS,
    TOPIC_EVENTS,
    TOPIC_EVENTS_CLEAN,
    TOPIC_EVENTS_FILTERED,
    Broker,
    Message,
)
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable

__all__ = ["TOPIC_GROUP_MEMBERS", "IggyBroker", "translate_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

TOPIC_GROUP_MEMBERS = "group-members"
_PLATFORM_TOPICS = (TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_FILTERED, TOPIC_DEAD_LETTERS)

# Command codes and wire constants of the Iggy binary protocol (core/binary_protocol
# in apache/iggy at commit cc269ef70).
_GET_CONSUMER_OFFSET = 120
_STORE_CONSUMER_OFFSET = 121
_CREATE_TOPIC = 302
_CONSUMER_KIND_SINGLE = 1
_IDENTIFIER_KIND_STRING = 2
_HEADER_KIND_STRING = 2
_ACK_QUORUM = 1
_MAX_NAME_BYTES = 255
_MAX_OPTION_BYTES = 255
# Start of the SDK error text for the server's UnsupportedOptionKey (code 4041).
_UNSUPPORTED_OPTION = "Unsupported option key"
_GROUP_MEMBERS_EXPIRY = datetime.timedelta(hours=1)

# Substrings of SDK error messages that mean the server could not be reached;
# any other failure is a BrokerError the caller should not retry blindly.
_UNREACHABLE_MARKERS = (
    "connect",
    "connection",
    "disconnected",
    "refused",
    "reset",
    "broken pipe",
    "timed out",
    "timeout",
    "unavailable",
    "not connected",
    "io error",
    "unauthenticated",
)


class IggyBroker(Broker):
    """A Broker on an Apache Iggy server at `IGGY_URL`."""

    backend = "iggy"

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.partitions = settings.partitions
        self.stream = settings.iggy_stream
        self._client: Any = None
        # Set when a call found the server unreachable. In the Iggy SDK source of August
        # 2026, a TCP client that lost the server stays disconnected, so the next call
        # opens a new client.
        self._reconnect_needed = False
        self._reconnect_lock = asyncio.Lock()
        self._known_topics: set[str] = set()
        # Set once the server rejected the SDK's topic options, so later topics skip that attempt.
        self._legacy_topic_options = False
        self._reader_id = f"reader-{uuid.uuid4().hex[:12]}"

    async def connect(self) -> None:
        """Connect, log in, and create the stream, topics and partitions if missing."""
        client = await self._open_client()
        self._client = client
        self._reconnect_needed = False
        if await self._call(client.get_stream(self.stream), "get stream") is None:
            try:
                await self._call(client.create_stream(self.stream), "create stream")
            except BrokerError as error:
                # Another process connecting at the same time created it first.
                if not _already_exists(error):
                    raise
        for topic in (*_PLATFORM_TOPICS, TOPIC_GROUP_MEMBERS):
            await self._ensure_topic(topic)
        logger.info(
            "Connected to Iggy.",
            extra={"stream": self.stream, "partitions": self.partitions},
        )

    async def _open_client(self) -> Any:
        """Create an SDK client, connect and log in; raise BrokerUnavailable if that fails."""
        settings = self.settings
        config = iggy.TcpConfig(
            server_address=settings.iggy_url,
            auto_login=iggy.AutoLogin.username_password(
                settings.iggy_username, settings.iggy_password
            ),
            # A finite retry count, so a call fails instead of waiting forever while the server is down.
            reconnection=iggy.TcpReconnectionConfig(
                enabled=True, max_retries=1, interval=datetime.timedelta(milliseconds=200)
            ),
        )
        client = iggy.IggyClient(config)
        await self._call(client.connect(), "connect")
        return client

    async def close(self) -> None:
        """Drop the client; the SDK closes its connection when the client is released."""
        self._client = None
        self._reconnect_needed = False
        self._known_topics.clear()

    async def healthy(self) -> bool:
        """Return whether the server responded to a ping just now."""
        if self._client is None:
            return False
        try:
            client = await self._connected()
            await self._call(client.ping(), "ping")
        except BrokerError:
            return False
        return True

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        """Send each payload as one message to `partition`; return once the server acknowledged."""
        self._check_partition(partition)
        if not payloads:
            return
        try:
            messages = [iggy.SendMessage(bytes(payload)) for payload in payloads]
        except (TypeError, ValueError) as error:
            # The SDK rejects empty payloads itself, before anything is sent.
            raise BrokerError(f"Iggy rejected a payload: {error}") from error
        client = await self._connected()
        await self._ensure_topic(topic)
        await self._call(
            client.send_messages(
                self.stream, topic, iggy.Partitioning.partition_id(partition), messages
            ),
            "send messages",
        )

    async def poll(
        self, topic: str, group: str, partition: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` after the group's stored offset, oldest first."""
        return await self._poll(
            topic,
            partition,
            iggy.Consumer.Single(group),
            iggy.PollingStrategy.Next(),
            max_messages,
            False,
        )

    async def read(
        self, topic: str, partition: int, start: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` from offset `start` on, without touching any offset."""
        if start < 0:
            raise BrokerError(f"start offset must be at least 0, got {start}")
        return await self._poll(
            topic,
            partition,
            iggy.Consumer.Single(self._reader_id),
            iggy.PollingStrategy.Offset(start),
            max_messages,
            False,
        )

    async def commit(self, topic: str, group: str, partition: int, offset: int) -> None:
        """Store `offset` on the server as the group's offset for the partition."""
        self._check_partition(partition)
        if offset < 0:
            raise BrokerError(f"offset must be at least 0, got {offset}")
        # The server also rejects an offset past the partition's end, but only as
        # "invalid offset". This check names the newest offset, as the local log does.
        newest = await self.end_offset(topic, partition)
        if newest is None:
            raise BrokerError(f"cannot commit offset {offset} of {topic}/{partition}: it is empty")
        if offset > newest:
            raise BrokerError(
                f"cannot commit offset {offset} of {topic}/{partition}:"
                f" the newest offset is {newest}"
            )
        request = _consumer_request(group, self.stream, topic, partition)
        request += struct.pack("<QB", offset, _ACK_QUORUM)
        client = await self._connected()
        await self._call(
            client.send_binary_request(_STORE_CONSUMER_OFFSET, request), "store consumer offset"
        )

    async def committed(self, topic: str, group: str, partition: int) -> int | None:
        """Return the group's offset stored on the server, or None before its first commit."""
        self._check_partition(partition)
        client = await self._connected()
        await self._ensure_topic(topic)
        request = _consumer_request(group, self.stream, topic, partition)
        response = await self._call(
            client.send_binary_request(_GET_CONSUMER_OFFSET, request), "get consumer offset"
        )
        if not response:
            return None
        # The response is partition id (u32), current offset (u64) and stored offset (u64).
        if len(response) < 20:
            raise BrokerError(
                f"Iggy returned a consumer offset of {len(response)} bytes, expected 20"
            )
        _, _, stored = struct.unpack_from("<IQQ", response)
        return int(stored)

    async def end_offset(self, topic: str, partition: int) -> int | None:
        """Return the current offset of the partition, or None while it is empty."""
        self._check_partition(partition)
        client = await self._connected()
        details = await self._call(client.get_topic(self.stream, topic), "get topic")
        if details is None:
            return None
        for info in details.partitions:
            if info.id == partition:
                return None if info.messages_count == 0 else int(info.current_offset)
        return None

    async def join_group(self, topic: str, group: str, member: str) -> None:
        """Send a heartbeat of `member` to the membership topic."""
        await self._send_membership(topic, group, member, "join")

    async def leave_group(self, topic: str, group: str, member: str) -> None:
        """Send a leave record so the other members take over at once."""
        await self._send_membership(topic, group, member, "leave")

    async def assigned_partitions(self, topic: str, group: str, member: str) -> list[int]:
        """Return every n-th partition for member i of the n sorted live members."""
        members = await self.live_members(topic, group)
        if member not in members:
            return []
        index = members.index(member)
        return [p for p in range(self.partitions) if p % len(members) == index]

    async def live_members(self, topic: str, group: str) -> list[str]:
        """Return the sorted members whose last heartbeat is within the session timeout."""
        timeout_us = int(self.settings.session_timeout_seconds * 1_000_000)
        since_us = int(time.time() * 1_000_000) - timeout_us
        latest: dict[str, str] = {}
        start: Any = iggy.PollingStrategy.Timestamp(since_us)
        while True:
            batch = await self._poll(
                TOPIC_GROUP_MEMBERS, 0, iggy.Consumer.Single(self._reader_id), start, 1000, False
            )
            for message in batch:
                record = orjson.loads(message.payload)
                if record.get("topic") == topic and record.get("group") == group:
                    latest[record["member"]] = record["action"]
            if len(batch) < 1000:
                break
            start = iggy.PollingStrategy.Offset(batch[-1].offset + 1)
        return sorted(member for member, action in latest.items() if action == "join")

    # Plumbing.

    async def _send_membership(self, topic: str, group: str, member: str, action: str) -> None:
        if not 0 < len(member) <= 200:
            raise BrokerError("invalid member id: expected 1 to 200 characters")
        client = await self._connected()
        record = orjson.dumps({"topic": topic, "group": group, "member": member, "action": action})
        await self._call(
            client.send_messages(
                self.stream,
                TOPIC_GROUP_MEMBERS,
                iggy.Partitioning.partition_id(0),
                [iggy.SendMessage(record)],
            ),
            "send heartbeat",
        )

    async def _poll(
        self,
        topic: str,
        partition: int,
        consumer: Any,
        strategy: Any,
        max_messages: int,
        auto_commit: bool,
    ) -> list[Message]:
        self._check_partition(partition)
        if max_messages <= 0:
            return []
        client = await self._connected()
        await self._ensure_topic(topic)
        received = await self._call(
            client.poll_messages(
                self.stream,
                topic,
                consumer=consumer,
                polling_strategy=strategy,
                count=max_messages,
                auto_commit=auto_commit,
                partition_id=partition,
            ),
            "poll messages",
        )
        # Iggy timestamps are microseconds; Message carries milliseconds.
        return [
            Message(partition, int(m.offset()), int(m.timestamp()) // 1000, bytes(m.payload()))
            for m in received
        ]

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        client = await self._connected()
        details = await self._call(client.get_topic(self.stream, topic), "get topic")
        partitions = 1 if topic == TOPIC_GROUP_MEMBERS else self.partitions
        if details is None:
            expiry = _GROUP_MEMBERS_EXPIRY if topic == TOPIC_GROUP_MEMBERS else None
            try:
                await self._create_topic(client, topic, partitions, expiry)
            except BrokerError as error:
                # Another process connecting at the same time created it first.
                if not _already_exists(error):
                    raise
        elif details.partitions_count < partitions:
            await self._call(
                client.create_partitions(self.stream, topic, partitions - details.partitions_count),
                "create partitions",
            )
        self._known_topics.add(topic)

    async def _create_topic(
        self, client: Any, topic: str, partitions: int, expiry: datetime.timedelta | None
    ) -> None:
        """Create a topic whose acknowledged sends are on stable storage.

        The SDK 0.9.0 `create_topic` always sends the option keys `durability`
        and `consumer_offset_durability`. The Iggy server at apache/iggy commit
        cc269ef70 (0.9.0-edge.5) rejects them with UnsupportedOptionKey, so on
        that error the topic is created with the server's CreateTopic command
        instead. That server keeps messages in an in-memory journal until
        `messages_required_to_save` of them (default 1024) have arrived, and a
        kill -9 loses the journal. So the topic flushes every message, and
        `enforce_fsync` makes each flush an fsync.

        NOTE: the SDK path has not run against a server that accepts `durability`,
        so whether PERSISTED also covers such a server's journal is unchecked.
        """
        if not self._legacy_topic_options:
            try:
                await self._call(
                    client.create_topic(
                        self.stream,
                        topic,
                        partitions,
                        durability=iggy.Durability.PERSISTED,
                        message_expiry=(
                            iggy.IggyExpiry.ExpireDuration(expiry) if expiry is not None else None
                        ),
                    ),
                    "create topic",
                )
                return
            except BrokerError as error:
                if isinstance(error, BrokerUnavailable) or _UNSUPPORTED_OPTION not in str(error):
                    raise
            self._legacy_topic_options = True
            logger.info(
                "Iggy server rejected the SDK topic options; creating topics with enforce_fsync.",
                extra={"stream": self.stream, "topic": topic},
            )
        options = {"enforce_fsync": "true", "messages_required_to_save": "1"}
        if expiry is not None:
            options["message_expiry"] = f"{int(expiry.total_seconds())}s"
        request = _create_topic_request(self.stream, topic, partitions, options)
        await self._call(client.send_binary_request(_CREATE_TOPIC, request), "create topic")

    async def _connected(self) -> Any:
        """Return the SDK client, replacing it first if the last call lost the server."""
        if self._client is None:
            raise BrokerUnavailable("not connected to Iggy; call connect() first")
        if self._reconnect_needed:
            async with self._reconnect_lock:
                if self._reconnect_needed:
                    self._client = await self._open_client()
                    self._reconnect_needed = False
                    logger.info("Reconnected to Iggy.", extra={"stream": self.stream})
        return self._client

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise BrokerError(f"partition must be in 0..{self.partitions - 1}, got {partition}")

    async def _call(self, awaitable: Awaitable[T], action: str) -> T:
        """Await an SDK call under the configured timeout and translate its errors."""
        try:
            return await asyncio.wait_for(awaitable, self.settings.iggy_timeout_seconds)
        except TimeoutError as error:
            self._reconnect_needed = True
            raise BrokerUnavailable(
                f"Iggy at {self.settings.iggy_url} did not respond to {action} within"
                f" {self.settings.iggy_timeout_seconds} s"
            ) from error
        except (RuntimeError, OSError) as error:
            translated = translate_error(error, action, self.settings.iggy_url)
            if isinstance(translated, BrokerUnavailable):
                self._reconnect_needed = True
            raise translated from error


def _encode_name(name: str) -> bytes:
    """Encode `name` as a string identifier: kind, length, UTF-8 bytes."""
    data = name.encode()
    if not 0 < len(data) <= _MAX_NAME_BYTES:
        raise BrokerError(
            f"invalid Iggy name {name[:50]!r}: expected 1 to {_MAX_NAME_BYTES} UTF-8 bytes"
        )
    return bytes((_IDENTIFIER_KIND_STRING, len(data))) + data


def _encode_option(kind: int, data: bytes) -> bytes:
    """Encode one key or value of an options block: kind, u32 length, bytes."""
    if not 0 < len(data) <= _MAX_OPTION_BYTES:
        raise BrokerError(
            f"invalid Iggy option {data[:50]!r}: expected 1 to {_MAX_OPTION_BYTES} bytes"
        )
    return bytes((kind,)) + struct.pack("<I", len(data)) + data


def _create_topic_request(
    stream: str, topic: str, partitions: int, options: dict[str, str]
) -> bytes:
    """Encode a CreateTopic request: stream, partition count, topic name, string options."""
    name = _encode_name(topic)[1:]  # a topic name has no identifier kind, only length and bytes
    block = b"".join(
        _encode_option(_HEADER_KIND_STRING, key.encode())
        + _encode_option(_HEADER_KIND_STRING, value.encode())
        for key, value in options.items()
    )
    return _encode_name(stream) + struct.pack("<I", partitions) + name + block


def _consumer_request(group: str, stream: str, topic: str, partition: int) -> bytes:
    """Encode consumer, stream, topic and partition, the head of the consumer offset commands."""
    return (
        bytes((_CONSUMER_KIND_SINGLE,))
        + _encode_name(group)
        + _encode_name(stream)
        + _encode_name(topic)
        + struct.pack("<BI", 1, partition)
    )


def _already_exists(error: BrokerError) -> bool:
    """Return whether the server rejected a create request because the resource exists."""
    return not isinstance(error, BrokerUnavailable) and "already exists" in str(error)


def translate_error(error: BaseException, action: str, url: str) -> BrokerError:
    """Return BrokerUnavailable for an SDK error that means the server is unreachable."""
    text = str(error)
    if isinstance(error, OSError) or any(marker in text.lower() for marker in _UNREACHABLE_MARKERS):
        return BrokerUnavailable(f"Iggy at {url} is unreachable ({action}): {text[:200]}")
    return BrokerError(f"Iggy {action} failed: {text[:200]}")
