"""The producer: a bounded queue that batches events in the background and publishes them.

Durability point: the future returned by `submit_event` or `submit_records`
resolves only after every event it covers is durable. That is after
`Broker.publish` returned for it, so the local log has committed it or the
remote broker acknowledged it. While the remote broker is unreachable, it is
after the local spool committed it. The ingest service sends its 2xx only after
that future resolved, so an accepted event survives a kill -9 of the service.
Many requests share one commit (group commit): the background thread takes
everything queued, publishes one transaction per partition, then resolves all
the futures of that round.

Threads: a submit wakes the `producer` thread through a condition variable,
which never releases the GIL on the submitting thread. An asyncio wake-up
would write to the loop's self-pipe, and that send drops and re-takes the GIL
on the request's event loop thread for every publish round. The `producer-io`
thread runs an event loop for the broker's asynchronous calls and the spool
forwarder. The `producer` thread appends to a plain local log itself.

Order: events of one partition are published in submission order. While the
spool contains messages, new events go to the spool too, so the forwarder sends
them to the broker in order once it is back.

Several processes may share one spool directory: a producer forwards a spool
partition only while it holds that partition's forwarder lease, so two
processes never forward the same partition at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace

from tracker._core import encode_record_batch
from tracker.broker._queue import Entry, Ticket, as_bytes
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS, Broker, Message
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable, QueueFull

__all__ = ["FORWARDER_GROUP", "Producer", "ProducerState"]

logger = logging.getLogger(__name__)

FORWARDER_GROUP = "spool-forwarder"
_FORWARDER_LEASE = "forwarder"
_FORWARDER_LEASE_SECONDS = 60.0
_FORWARD_CHUNK = 100


@dataclass(frozen=True, slots=True)
class ProducerState:
    """Snapshot for `/health` and `/metrics`: where events go and how many wait."""

    backend: str
    state: str
    """`connected`, `spooling` (broker unreachable, events kept in the spool) or `disconnected`."""
    queue_events: int
    spool_messages: int
    spool_events: int
    published_events: int
    spooled_events: int
    failed_events: int


class Producer:
    """Batches submitted events per partition and publishes them from a background thread."""

    def __init__(
        self,
        broker: Broker,
        settings: BrokerSettings,
        *,
        topic: str = TOPIC_EVENTS,
        spool: LocalBroker | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.topic = topic
        self.spool = spool
        # A round for one partition of the plain local log is appended on the producer thread,
        # without the hop to the log's thread pool. A subclass that overrides publish (tests
        # do) and a remote broker with its spool keep the asynchronous path.
        self._publish_blocking = (
            broker.publish_blocking
            if spool is None
            and isinstance(broker, LocalBroker)
            and type(broker).publish is LocalBroker.publish
            else None
        )
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._queue: deque[Entry] = deque()
        self._open_singles: dict[int, Entry] = {}
        self._queued_events = 0
        self._queued_bytes = 0
        # The producer thread waits on this condition. A submit notifies it under the queue lock.
        self._work = threading.Condition(self._lock)
        self._signalled = False
        # When the oldest queued entry arrived; the linger counts from here.
        self._first_queued_at = 0.0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._io_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

        self._connected = False
        self._spooling = False
        self._spool_messages = 0
        self._spool_events = 0
        self._published_events = 0
        self._spooled_events = 0
        self._failed_events = 0

    @classmethod
    def from_settings(cls, settings: BrokerSettings, *, topic: str = TOPIC_EVENTS) -> Producer:
        """Build a producer on the configured backend, with a spool when the broker is remote."""
        from tracker.broker import open_broker

        spool = None
        if settings.backend == "iggy":
            # Retention stays off in the spool: only the forwarder deletes, after the broker acknowledged.
            spool_settings = replace(settings, retention_interval_seconds=0.0)
            spool = LocalBroker(spool_settings, root=settings.spool_dir)
        return cls(open_broker(settings), settings, topic=topic, spool=spool)

    # Lifecycle.

    def start(self, timeout: float = 30.0) -> None:
        """Start the background thread and connect; raise if the broker cannot be used at all.

        A remote broker that is unreachable at start is not an error when a
        spool is configured: the producer starts in the spooling state.
        """
        if self._io_thread is not None:
            return
        self._io_thread = threading.Thread(target=self._io_main, name="producer-io", daemon=True)
        self._io_thread.start()
        if not self._ready.wait(timeout):
            raise BrokerUnavailable(f"the producer did not start within {timeout} seconds")
        if self._start_error is not None:
            raise self._start_error
        self._thread = threading.Thread(target=self._drain_main, name="producer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted event is durable or failed; return False on timeout."""
        with self._drained:
            return self._drained.wait_for(lambda: self._queued_events == 0, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop accepting, drain the queue, then close the broker; return whether all drained."""
        with self._lock:
            self._closing = True
            self._work.notify()
        drained = self.flush(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # A round is still publishing. Stopping the io loop now would cancel it or
                # close the broker under it, so both keep running until the round ends.
                logger.warning(
                    "Producer close timed out with a round still publishing.",
                    extra={"queue_events": self._queued_events, "timeout_seconds": timeout},
                )
                return drained
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._io_thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already stopped
                loop.call_soon_threadsafe(stop.set)
            self._io_thread.join(timeout)
        return drained

    def __enter__(self) -> Producer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Submitting.

    def submit_event(self, partition: int, event_json: bytes) -> Future[None]:
        """Queue one event JSON document; the future resolves once the event is durable.

        Events submitted to one partition between two publish rounds share one
        entry and one future, which keeps this call to a lock, a dict lookup
        and a list append. Raises QueueFull when the queue contains
        `queue_events` events already.
        """
        return self._queue_event(partition, event_json, None)[0]

    def _queue_event(
        self, partition: int, event_json: bytes, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[Future[None], asyncio.Future[None] | None]:
        """Queue one event; with `loop`, also return an asyncio future of that loop for it."""
        self._check_partition(partition)
        event = as_bytes(event_json)
        with self._lock:
            self._check_room(1, len(event))
            entry = self._open_singles.get(partition)
            if not self._queue:
                self._first_queued_at = time.monotonic()
            if entry is None:
                entry = Entry(partition, 0, Ticket(1), singles=[])
                self._open_singles[partition] = entry
                self._queue.append(entry)
            assert entry.singles is not None
            entry.singles.append(event)
            entry.events += 1
            entry.size += len(event)
            self._queued_events += 1
            self._queued_bytes += len(event)
            waiter = entry.ticket.add_waiter(loop) if loop is not None else None
            if not self._signalled:
                self._signalled = True
                self._work.notify()
        return entry.ticket.future, waiter

    def submit_records(self, records: Sequence[tuple[int, int, bytes]]) -> Future[None]:
        """Queue encoded record batches as (partition, event count, batch); resolve when durable.

        Raises QueueFull when the events would not fit in the queue bound.
        """
        return self._queue_records(records, None)[0]

    def _queue_records(
        self, records: Sequence[tuple[int, int, bytes]], loop: asyncio.AbstractEventLoop | None
    ) -> tuple[Future[None], asyncio.Future[None] | None]:
        """Queue record batches; with `loop`, also return an asyncio future of that loop for them."""
        events = 0
        for partition, count, _ in records:
            self._check_partition(partition)
            if count < 0:
                raise BrokerError(f"event count must be at least 0, got {count}")
            events += count
        ticket = Ticket(len(records))
        if not records:
            ticket.future.set_result(None)
            return ticket.future, None
        entries = [Entry(p, count, ticket, batch=as_bytes(batch)) for p, count, batch in records]
        size = sum(len(entry.batch or b"") for entry in entries)
        for entry in entries:
            entry.size = len(entry.batch or b"")
        with self._lock:
            self._check_room(events, size)
            for entry in entries:
                # Later single events of this partition must queue behind this batch.
                self._open_singles.pop(entry.partition, None)
            waiter = ticket.add_waiter(loop) if loop is not None else None
            if not self._queue:
                self._first_queued_at = time.monotonic()
            self._queue.extend(entries)
            self._queued_events += events
            self._queued_bytes += size
            if not self._signalled:
                self._signalled = True
                self._work.notify()
        return ticket.future, waiter

    async def send_event(self, partition: int, event_json: bytes) -> None:
        """Submit one event and wait until it is durable; for async handlers.

        Raises QueueFull or BrokerError like `submit_event`, and the
        publishing error when the event could not be made durable.
        """
        _, waiter = self._queue_event(partition, event_json, asyncio.get_running_loop())
        assert waiter is not None
        await waiter

    async def send_records(self, records: Sequence[tuple[int, int, bytes]]) -> None:
        """Submit record batches and wait until they are durable; for async handlers."""
        _, waiter = self._queue_records(records, asyncio.get_running_loop())
        if waiter is not None:
            await waiter

    def state(self) -> ProducerState:
        """Return the backend, connection state, queue depth and spool size."""
        if self._spooling:
            state = "spooling"
        elif self._connected:
            state = "connected"
        else:
            state = "disconnected"
        return ProducerState(
            backend=self.broker.backend,
            state=state,
            queue_events=self._queued_events,
            spool_messages=self._spool_messages,
            spool_events=self._spool_events,
            published_events=self._published_events,
            spooled_events=self._spooled_events,
            failed_events=self._failed_events,
        )

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.broker.partitions:
            raise BrokerError(
                f"partition must be in 0..{self.broker.partitions - 1}, got {partition}"
            )

    def _check_room(self, events: int, size: int) -> None:
        """Raise unless `events` more events of `size` bytes fit; the caller holds the lock."""
        if self._closing or self._thread is None:
            raise BrokerError("the producer is not running; call start() before submitting")
        if self._queued_events + events > self.settings.queue_events:
            raise QueueFull(
                f"the producer queue is full ({self._queued_events} of"
                f" {self.settings.queue_events} events); retry later"
            )
        if self._queued_bytes + size > self.settings.queue_bytes:
            raise QueueFull(
                f"the producer queue is full ({self._queued_bytes} of"
                f" {self.settings.queue_bytes} bytes); retry later"
            )

    # Background threads.

    def _io_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._route_lock = asyncio.Lock()
        try:
            await self._open()
        except BaseException as error:
            self._start_error = error
            self._ready.set()
            return
        self._ready.set()

        forwarder = asyncio.create_task(self._forward_loop()) if self.spool is not None else None
        try:
            await self._stop.wait()
        finally:
            if forwarder is not None:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarder
            await self._close_backends()

    async def _open(self) -> None:
        if self.spool is not None:
            await self.spool.connect()
            await self._refresh_spool_size()
        try:
            await self.broker.connect()
            self._connected = True
        except BrokerUnavailable as error:
            if self.spool is None:
                raise
            logger.warning(
                "Broker unreachable at start; spooling events.", extra={"error": str(error)}
            )
            self._spooling = True
        if self._spool_messages:
            self._spooling = True

    async def _close_backends(self) -> None:
        for backend in (self.broker, self.spool):
            if backend is None:
                continue
            try:
                await backend.close()
            except BrokerError as error:
                logger.warning("Closing a broker failed.", extra={"error": str(error)})

    def _drain_main(self) -> None:
        """Publish and settle everything queued, round after round, until closed and empty."""
        linger = self.settings.linger_ms / 1000
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._work.wait()
                if not self._queue:
                    return  # closing, and everything submitted is settled
                first_queued_at = self._first_queued_at
                # The linger bounds how long the oldest queued event waits for company, as
                # in Kafka's linger.ms. Events that queued up during the previous publish
                # have waited that long already, so under load rounds follow each other
                # without a pause.
                wait = (
                    linger - (time.monotonic() - first_queued_at)
                    if linger > 0
                    and not self._closing
                    and self._queued_events < self.settings.batch_events
                    else 0.0
                )
            if wait > 0:
                time.sleep(wait)
            with self._lock:
                entries = list(self._queue)
                self._queue.clear()
                self._open_singles.clear()
                self._signalled = False
            self._publish_from_thread(entries)

    def _publish_from_thread(self, entries: list[Entry]) -> None:
        """Publish one round from the producer thread: directly, or on the io thread's loop."""
        partitions = {entry.partition for entry in entries}
        if len(partitions) == 1 and self._publish_blocking is not None:
            partition = next(iter(partitions))
            result = self._publish_partition_blocking(partition, entries)
            self._settle_partition(partition, entries, result)
            return
        publishing = self._publish_round(entries)
        try:
            if self._loop is None:
                raise BrokerError("the producer's event loop is not running")
            running = asyncio.run_coroutine_threadsafe(publishing, self._loop)
        except Exception as error:  # the loop stopped, so nothing in this round became durable
            publishing.close()
            self._fail_round(entries, error)
            return
        try:
            running.result()
        except Exception as error:
            # _publish_round settles entries only after its last await, so a round that raised
            # here (cancelled with its loop) has settled nothing yet.
            self._fail_round(entries, error)

    def _fail_round(self, entries: list[Entry], error: Exception) -> None:
        """Log and settle a round that never reached the broker with a BrokerError."""
        events = sum(entry.events for entry in entries)
        logger.error(
            "Publishing a round failed on the producer's event loop.",
            extra={"events": events, "error": repr(error)},
        )
        failure = BrokerError(f"publishing failed: {error!r}")
        failure.__cause__ = error
        self._failed_events += events
        self._settle(entries, failure)

    async def _publish_round(self, entries: list[Entry]) -> None:
        """Publish every entry, one broker call per partition, then settle their tickets."""
        by_partition: dict[int, list[Entry]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry)
        async with self._route_lock:
            results = await asyncio.gather(
                *(self._publish_partition(p, group) for p, group in by_partition.items()),
                return_exceptions=True,
            )
        for (partition, group), result in zip(by_partition.items(), results, strict=True):
            self._settle_partition(partition, group, result)

    def _settle_partition(
        self, partition: int, entries: list[Entry], result: BaseException | None
    ) -> None:
        """Settle one partition's entries of a round with its publish result."""
        error: BaseException | None = None
        if isinstance(result, BaseException):
            events = sum(entry.events for entry in entries)
            self._failed_events += events
            logger.error(
                "Publishing to the broker failed.",
                extra={"partition": partition, "events": events, "error": repr(result)},
            )
            error = result
            if not isinstance(result, BrokerError):
                # Callers catch BrokerError, so an unexpected failure must not become a 500.
                error = BrokerError(f"publishing to partition {partition} failed: {result!r}")
                error.__cause__ = result
        self._settle(entries, error)

    async def _publish_partition(self, partition: int, entries: list[Entry]) -> None:
        payloads = self._encode(entries)
        events = sum(entry.events for entry in entries)
        if not self._spooling:
            try:
                await self.broker.publish(self.topic, partition, payloads)
                self._connected = True
                self._published_events += events
                return
            except BrokerUnavailable as error:
                self._connected = False
                if self.spool is None:
                    raise
                if not self._spooling:
                    logger.warning(
                        "Broker unreachable; spooling events.", extra={"error": str(error)}
                    )
                self._spooling = True
        assert self.spool is not None
        await self.spool.publish(self.topic, partition, payloads)
        self._spool_messages += len(payloads)
        self._spool_events += events
        self._spooled_events += events

    def _publish_partition_blocking(
        self, partition: int, entries: list[Entry]
    ) -> BaseException | None:
        """Publish one partition's entries on this thread; return the error instead of raising."""
        assert self._publish_blocking is not None
        try:
            self._publish_blocking(self.topic, partition, self._encode(entries))
        except Exception as error:  # settled by the caller like a failed gather result
            return error
        self._connected = True
        self._published_events += sum(entry.events for entry in entries)
        return None

    def _encode(self, entries: list[Entry]) -> list[bytes]:
        """Return the payloads in submission order, single events framed into record batches."""
        payloads: list[bytes] = []
        limit = self.settings.batch_events
        for entry in entries:
            if entry.batch is not None:
                payloads.append(entry.batch)
                continue
            singles = entry.singles or []
            for start in range(0, len(singles), limit):
                payloads.append(encode_record_batch(singles[start : start + limit]))
        return payloads

    def _settle(self, entries: list[Entry], error: BaseException | None) -> None:
        settled = settled_bytes = 0
        for entry in entries:
            ticket = entry.ticket
            settled += entry.events
            settled_bytes += entry.size
            ticket.remaining -= 1
            if ticket.future.done():
                continue
            if error is not None or ticket.remaining == 0:
                ticket.settle(error)
        with self._drained:
            self._queued_events -= settled
            self._queued_bytes -= settled_bytes
            self._drained.notify_all()

    # Spool forwarding.

    async def _forward_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconnect_seconds)
            try:
                await self.forward_spool()
            except BrokerError as error:
                logger.warning(
                    "Forwarding the spool failed; retrying later.",
                    extra={"error": str(error), "retry_seconds": self.settings.reconnect_seconds},
                )
            if self._connected and not self._spooling:
                await self._probe_broker()

    async def _probe_broker(self) -> None:
        """Mark the broker disconnected when it fails a health check.

        Without traffic no publish fails, so this check is what turns the state
        to `disconnected` when the broker goes away while the service is idle.
        The next forwarding pass reconnects and marks it connected again.
        """
        if await self.broker.healthy():
            return
        self._connected = False
        logger.warning(
            "Broker failed its health check; reconnecting later.",
            extra={"retry_seconds": self.settings.reconnect_seconds},
        )

    def forward_now(self, timeout: float = 30.0) -> int:
        """Run one forwarding pass from another thread and return how many messages it sent."""
        if self._loop is None:
            raise BrokerError("the producer is not running; call start() first")
        future = asyncio.run_coroutine_threadsafe(self.forward_spool(), self._loop)
        return future.result(timeout)

    async def forward_spool(self) -> int:
        """Send the spool to the broker in per-partition order; return how many messages went.

        Messages leave the spool only after the broker acknowledged them. A
        crash between the two steps sends them again, which consumers absorb
        because every sink deduplicates on `event_id`.
        """
        spool = self.spool
        if spool is None:
            return 0
        if not self._connected:
            try:
                await self.broker.connect()
            except BrokerUnavailable:
                await self._refresh_spool_size()
                return 0
            self._connected = True

        sent = 0
        for partition in range(spool.partitions):
            if (await spool.stats(self.topic, partition)).messages:
                sent += await self._forward_partition(spool, partition)

        await self._refresh_spool_size()
        if self._spool_messages == 0 and self._spooling:
            async with self._route_lock:
                await self._refresh_spool_size()
                if self._spool_messages == 0:
                    self._spooling = False
                    logger.info("Spool forwarded; publishing to the broker again.")
        return sent

    async def _forward_partition(self, spool: LocalBroker, partition: int) -> int:
        """Forward one spool partition under its lease; return how many messages went."""
        lease = (self.topic, partition, _FORWARDER_LEASE, self.member_id)
        if not await spool.acquire_lease(*lease, _FORWARDER_LEASE_SECONDS):
            return 0  # another process is forwarding this partition
        sent = 0
        try:
            while True:
                async with self._route_lock:
                    moved = await self._forward_chunk(spool, partition)
                if moved == 0:
                    return sent
                sent += moved
                if not await spool.acquire_lease(*lease, _FORWARDER_LEASE_SECONDS):
                    return sent  # the lease expired and another process took over
        finally:
            await spool.release_lease(*lease)

    async def _forward_chunk(self, spool: LocalBroker, partition: int) -> int:
        messages = await spool.poll(self.topic, FORWARDER_GROUP, partition, _FORWARD_CHUNK)
        if not messages:
            return 0
        try:
            await self.broker.publish(self.topic, partition, [m.payload for m in messages])
        except BrokerUnavailable:
            self._connected = False
            raise
        except BrokerError:
            # One message the broker rejects for good must not block the partition behind it.
            await self._forward_one_by_one(spool, partition, messages)
        last = messages[-1].offset
        await spool.commit(self.topic, FORWARDER_GROUP, partition, last)
        await spool.truncate(self.topic, partition, last)
        return len(messages)

    async def _forward_one_by_one(
        self, spool: LocalBroker, partition: int, messages: list[Message]
    ) -> None:
        """Send messages singly; park each one the broker rejects in the spool's dead letters."""
        for message in messages:
            try:
                await self.broker.publish(self.topic, partition, [message.payload])
            except BrokerUnavailable:
                self._connected = False
                raise
            except BrokerError as error:
                await spool.publish(TOPIC_DEAD_LETTERS, partition, [message.payload])
                logger.error(
                    "Broker rejected a spooled message; kept in the spool's dead letters.",
                    extra={
                        "topic": self.topic,
                        "partition": partition,
                        "spool_offset": message.offset,
                        "bytes": len(message.payload),
                        "error": str(error),
                    },
                )

    async def _refresh_spool_size(self) -> None:
        spool = self.spool
        if spool is None:
            return
        messages = events = 0
        for partition in range(spool.partitions):
            stats = await spool.stats(self.topic, partition)
            messages += stats.messages
            events += stats.events
        self._spool_messages = messages
        self._spool_events = events
