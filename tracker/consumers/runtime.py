"""The consumer runtime: polls a topic in a consumer group and feeds batches to one sink.

Delivery is at least once. For each assigned partition the runtime reads up to
`CONSUMER_POLL_MESSAGES` messages (record batches) after the last committed offset
and decodes them with `tracker._core.decode_record_batch`. It hands the events to
`Sink.process` and commits the last offset only after `process` returned, so a crash
at any point redelivers the batch and never skips it. Sinks deduplicate on
`event_id`, so redelivery never double counts.

Failures are classified:

- a message that does not decode goes whole to the `dead-letters` topic;
- one event that is not a JSON object, or that a sink rejects through
  `Batch.dead_letter`, goes to `dead-letters` alone. A sink that sets
  `decode_events = False` gets every document in `Batch.raw` unparsed and
  dead-letters the ones that are not JSON objects itself;
- `RetryableSinkError` and `BrokerUnavailable` retry the same batch with capped,
  full-jitter exponential backoff and never commit past it;
- any other exception stops the consumer without committing, so a supervisor can
  restart it and the batch is redelivered.

A dead-letter message is a record batch whose documents are JSON envelopes:
`{"consumer", "topic", "partition", "offset", "reason", "event"}` for one event, or
with `"payload_base64"` in place of `"event"` for an undecodable message.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from tracker._core import decode_record_batch, encode_record_batch
from tracker.broker.base import TOPIC_DEAD_LETTERS, Broker, Message
from tracker.consumers.metrics import ConsumerMetrics
from tracker.consumers.settings import ConsumerSettings
from tracker.errors import BrokerUnavailable, RecordBatchError, RetryableSinkError

__all__ = [
    "Batch",
    "ConsumerRuntime",
    "PartitionStatus",
    "Sink",
    "SinkContext",
    "partition_status",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_ERRORS = (RetryableSinkError, BrokerUnavailable)
MAX_REASON_LEN = 200
NOT_AN_OBJECT = "event is not a JSON object"


@dataclass(slots=True)
class Batch:
    """Events of consecutive messages from one partition, in offset order.

    `raw` contains every event document. `events` contains the same events decoded,
    or stays empty for a sink with `decode_events = False`.
    """

    partition: int
    first_offset: int
    last_offset: int
    events: list[dict[str, Any]]
    raw: list[bytes]
    offsets: list[int] = field(default_factory=list)
    """Broker offset of the message each event came from, same order as `raw`."""
    dead_letters: list[tuple[int, str]] = field(default_factory=list)

    def dead_letter(self, index: int, reason: str) -> None:
        """Route event `index` to the dead-letters topic with `reason` instead of the sink."""
        size = max(len(self.raw), len(self.events))
        if not 0 <= index < size:
            raise IndexError(f"dead_letter index {index} is outside the batch of {size} events")
        self.dead_letters.append((index, reason[:MAX_REASON_LEN]))


class SinkContext:
    """Resources a sink gets at `open`: broker, settings, metrics, logger and the registry."""

    def __init__(
        self,
        *,
        broker: Broker,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        logger: logging.Logger,
        registry_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self._registry_factory = registry_factory
        self._registry: Any = None

    @property
    def registry(self) -> Any:
        """The registry database, opened (and migrated) on first use."""
        if self._registry is None:
            if self._registry_factory is not None:
                self._registry = self._registry_factory()
            else:
                from tracker.registry.db import Registry

                self._registry = Registry(
                    self.settings.registry_path,
                    turso_url=self.settings.turso_url,
                    turso_token=self.settings.turso_token,
                )
        return self._registry


class Sink(abc.ABC):
    """One stream consumer: the runtime calls `open`, then `process` per batch, then `close`."""

    name: str
    """Consumer group name, also the `consumer` label of every metric."""
    source_topic: str
    """Topic the sink reads: "events" or "events-clean"."""
    decode_events: bool = True
    """Whether the runtime parses each document into `Batch.events`. A sink that
    reads `Batch.raw` only sets it to False and must dead-letter documents that are
    not JSON objects (reason "event is not a JSON object") itself."""

    async def open(self, context: SinkContext) -> None:  # noqa: B027 - optional hook
        """Acquire connections and state; called once before the first batch."""

    @abc.abstractmethod
    async def process(self, batch: Batch) -> None:
        """Make the batch durable, idempotently on `event_id`, before returning.

        Raise RetryableSinkError for a transient failure; put single bad events in
        `batch.dead_letter(index, reason)`.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `open` acquired; called once, also after a failure."""

    async def stored_offsets(self) -> dict[int, int] | None:
        """Return offsets the sink stores with its output, keyed by partition, or None.

        The runtime resumes each partition after the larger of this and the broker's
        committed offset.
        """
        return None


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """Committed offset, end offset and lag of one partition for one consumer group."""

    partition: int
    committed: int | None
    end: int | None
    lag: int


def _is_json_object(document: bytes) -> bool:
    try:
        return isinstance(orjson.loads(document), dict)
    except orjson.JSONDecodeError:
        return False


def _lag(committed: int | None, end: int | None) -> int:
    if end is None:
        return 0
    # Offsets start at 0, so before the first commit the whole partition is behind.
    return end - (committed if committed is not None else -1)


async def partition_status(broker: Broker, topic: str, group: str) -> list[PartitionStatus]:
    """Return the status of every partition of `topic` for consumer group `group`."""
    rows = []
    for partition in range(broker.partitions):
        committed = await broker.committed(topic, group, partition)
        end = await broker.end_offset(topic, partition)
        rows.append(PartitionStatus(partition, committed, end, max(0, _lag(committed, end))))
    return rows


class ConsumerRuntime:
    """Runs one sink against a broker until `request_stop` (SIGTERM) or a fatal error."""

    def __init__(
        self,
        sink: Sink,
        broker: Broker,
        settings: ConsumerSettings,
        *,
        metrics: ConsumerMetrics | None = None,
        registry_factory: Callable[[], Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.sink = sink
        self.broker = broker
        self.settings = settings
        self.metrics = metrics or ConsumerMetrics(sink.name)
        self.context = SinkContext(
            broker=broker,
            settings=settings,
            metrics=self.metrics,
            logger=logging.getLogger(f"tracker.consumers.{sink.name}"),
            registry_factory=registry_factory,
        )
        self._sleep = sleep or asyncio.sleep
        self._stopping = asyncio.Event()
        self._assigned: list[int] = []
        # Next offset to read per owned partition; dropped when the partition is lost
        # so a regained partition resumes from the group's committed offset.
        self._positions: dict[int, int] = {}
        self._stored_offsets: dict[int, int] = {}
        self._last_heartbeat = float("-inf")

    @property
    def topic(self) -> str:
        return self.sink.source_topic

    @property
    def group(self) -> str:
        return self.sink.name

    @property
    def assigned_partitions(self) -> list[int]:
        return list(self._assigned)

    def request_stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit it and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Open the sink, consume until stopped, then leave the group and close the sink."""
        await self.sink.open(self.context)
        try:
            await self._heartbeat()
            logger.info(
                "Consumer started.",
                extra={"consumer": self.group, "topic": self.topic, "member": self.settings.member},
            )
            # An idle consumer doubles its wait between polls up to the maximum, so many
            # idle processes on one machine cost little CPU. Any message resets the wait.
            idle_sleep = self.settings.idle_sleep_seconds
            while not self._stopping.is_set():
                if time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_seconds:
                    await self._heartbeat()
                handled = await self.run_once()
                if handled:
                    idle_sleep = self.settings.idle_sleep_seconds
                elif not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), idle_sleep)
                    idle_sleep = min(idle_sleep * 2, self.settings.idle_max_sleep_seconds)
        finally:
            with contextlib.suppress(Exception):
                await self.broker.leave_group(self.topic, self.group, self.settings.member)
            await self.sink.close()
            logger.info(
                "Consumer stopped.", extra={"consumer": self.group, "member": self.settings.member}
            )

    async def run_once(self) -> int:
        """Poll each owned partition once and process what came; return the messages handled."""
        handled = 0
        for partition in list(self._assigned):
            if self._stopping.is_set():
                break
            if time.monotonic() - self._last_heartbeat >= self.settings.heartbeat_seconds:
                await self._heartbeat()
            if partition not in self._positions:
                continue
            messages = await self._retrying(
                lambda p=partition: self.broker.read(
                    self.topic, p, self._positions[p], self.settings.poll_messages
                ),
                "poll",
            )
            if messages is None or not messages:
                continue
            if not await self._handle(partition, messages):
                break
            handled += len(messages)
        return handled

    async def _heartbeat(self) -> None:
        """Renew group membership, then adopt the current partition assignment."""
        member = self.settings.member
        await self._retrying(
            lambda: self.broker.join_group(self.topic, self.group, member), "join_group"
        )
        assigned = await self._retrying(
            lambda: self.broker.assigned_partitions(self.topic, self.group, member),
            "assigned_partitions",
        )
        if assigned is None:
            return
        self._last_heartbeat = time.monotonic()

        for lost in set(self._assigned) - set(assigned):
            self._positions.pop(lost, None)
            self.metrics.forget_partition(lost)
        gained = [partition for partition in assigned if partition not in self._positions]
        if gained and not await self._resume(gained):
            return

        if sorted(assigned) != self._assigned:
            logger.info(
                "Partition assignment changed.",
                extra={"consumer": self.group, "member": member, "partitions": sorted(assigned)},
            )
        self._assigned = sorted(assigned)
        await self._report_lag()

    async def _resume(self, partitions: list[int]) -> bool:
        """Set the read position of newly owned partitions; return False if stopped first."""
        # Read again on every gain: another member may have stored output since.
        self._stored_offsets = dict(await self.sink.stored_offsets() or {})
        for partition in partitions:
            committed = await self._retrying(
                lambda p=partition: self.broker.committed(self.topic, self.group, p),
                "committed",
            )
            if self._stopping.is_set():
                return False
            resume_after = max(
                committed if committed is not None else -1,
                self._stored_offsets.get(partition, -1),
            )
            self._positions[partition] = resume_after + 1
        return True

    async def _report_lag(self) -> None:
        for partition in self._assigned:
            end = await self._retrying(
                lambda p=partition: self.broker.end_offset(self.topic, p), "end_offset"
            )
            self.metrics.lag(partition, max(0, _lag(self._positions[partition] - 1, end)))

    async def _handle(self, partition: int, messages: list[Message]) -> bool:
        """Process and commit one poll's messages; return False if stopped before commit."""
        batch, undecodable = self._decode(partition, messages)
        if batch.raw:
            started = time.perf_counter()

            async def process() -> None:
                batch.dead_letters.clear()
                try:
                    await self.sink.process(batch)
                except BaseException:
                    self.metrics.failed(len(batch.raw))
                    raise

            if await self._retrying(process, "process", returns_value=False) is None:
                return False
            self.metrics.batch_seconds(time.perf_counter() - started)

        envelopes = undecodable + [
            self._sink_envelope(batch, index, reason) for index, reason in batch.dead_letters
        ]
        if envelopes:
            payload = encode_record_batch(envelopes)
            published = await self._retrying(
                lambda: self.broker.publish(TOPIC_DEAD_LETTERS, partition, [payload]),
                "publish_dead_letters",
                returns_value=False,
            )
            if published is None:
                return False
            self.metrics.dead_lettered(len(envelopes))
            logger.warning(
                "Routed records to dead letters.",
                extra={"consumer": self.group, "partition": partition, "count": len(envelopes)},
            )

        last_offset = messages[-1].offset
        committed = await self._retrying(
            lambda: self.broker.commit(self.topic, self.group, partition, last_offset),
            "commit",
            returns_value=False,
        )
        if committed is None:
            return False
        self._positions[partition] = last_offset + 1
        self.metrics.processed(len(batch.raw) - len(batch.dead_letters))
        logger.debug(
            "Committed batch.",
            extra={
                "consumer": self.group,
                "partition": partition,
                "offset": last_offset,
                "events": len(batch.raw),
            },
        )
        return True

    def _decode(self, partition: int, messages: list[Message]) -> tuple[Batch, list[bytes]]:
        batch = Batch(partition, messages[0].offset, messages[-1].offset, [], [])
        undecodable: list[bytes] = []
        for message in messages:
            try:
                documents = decode_record_batch(message.payload)
            except RecordBatchError as error:
                undecodable.append(
                    self._envelope(
                        partition,
                        message.offset,
                        f"undecodable record batch: {error}",
                        payload=message.payload,
                    )
                )
                continue
            if not self.sink.decode_events:
                batch.raw.extend(documents)
                batch.offsets.extend([message.offset] * len(documents))
                continue
            for document in documents:
                try:
                    event = orjson.loads(document)
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict):
                    undecodable.append(
                        self._envelope(
                            partition,
                            message.offset,
                            NOT_AN_OBJECT,
                            payload=document,
                        )
                    )
                    continue
                batch.events.append(event)
                batch.raw.append(document)
                batch.offsets.append(message.offset)
        return batch, undecodable

    def _sink_envelope(self, batch: Batch, index: int, reason: str) -> bytes:
        document = batch.raw[index]
        offset = batch.offsets[index]
        # A sink that reads raw documents may dead-letter one that is not a JSON object,
        # which cannot be embedded as `event`.
        if not self.sink.decode_events and not _is_json_object(document):
            return self._envelope(batch.partition, offset, reason, payload=document)
        return self._envelope(batch.partition, offset, reason, event=document)

    def _envelope(
        self,
        partition: int,
        offset: int,
        reason: str,
        *,
        event: bytes | None = None,
        payload: bytes | None = None,
    ) -> bytes:
        envelope: dict[str, Any] = {
            "consumer": self.group,
            "topic": self.topic,
            "partition": partition,
            "offset": offset,
            "reason": reason[:MAX_REASON_LEN],
        }
        if event is not None:
            envelope["event"] = orjson.Fragment(event)
        else:
            envelope["payload_base64"] = base64.b64encode(payload or b"").decode("ascii")
        return orjson.dumps(envelope)

    async def _retrying(
        self, operation: Callable[[], Awaitable[T]], action: str, *, returns_value: bool = True
    ) -> T | bool | None:
        """Run `operation`, retrying retryable errors until it succeeds or a stop is requested.

        Returns its result (or True when `returns_value` is False), or None when the
        runtime was asked to stop before the operation succeeded.
        """

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "Retrying after error.",
                extra={
                    "consumer": self.group,
                    "action": action,
                    "attempt": state.attempt_number,
                    "error": repr(error)[:300],
                    "wait_seconds": round(state.upcoming_sleep, 3),
                },
            )

        def stop_requested(state: RetryCallState) -> bool:
            return self._stopping.is_set()

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE_ERRORS),
            wait=wait_random_exponential(
                multiplier=self.settings.retry_base_seconds, max=self.settings.retry_max_seconds
            ),
            stop=stop_requested,
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    result = await operation()
        except RETRYABLE_ERRORS:
            if self._stopping.is_set():
                return None
            raise
        return result if returns_value else True
