"""Tests of the producer: batching, order, durability point, queue bound and failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from tests.broker.conftest import PARTITIONS, batch, with_changes
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.producer import Producer
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable, QueueFull


class GatedBroker(LocalBroker):
    """A real local log whose publishes wait until the test opens the gate."""

    def __init__(self, settings: BrokerSettings) -> None:
        super().__init__(settings)
        self.gate = threading.Event()

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        await super().publish(topic, partition, payloads)


class FailingBroker(LocalBroker):
    """A real local log whose publishes raise a chosen error."""

    def __init__(self, settings: BrokerSettings, error: Exception) -> None:
        super().__init__(settings)
        self.error = error

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        raise self.error


@pytest.fixture
def producer(settings: BrokerSettings) -> Iterator[Producer]:
    started = Producer(LocalBroker(settings), settings)
    started.start()
    yield started
    started.close()


def read_events(settings: BrokerSettings, partition: int) -> list[bytes]:
    """Return every event stored in one partition of the events topic, in log order."""

    async def read() -> list[bytes]:
        broker = LocalBroker(settings)
        await broker.connect()
        try:
            messages = await broker.read(TOPIC_EVENTS, partition, 0, 100_000)
        finally:
            await broker.close()
        return [event for message in messages for event in decode_record_batch(message.payload)]

    return asyncio.run(read())


def event(label: str) -> bytes:
    return orjson.dumps({"event_id": label})


def test_submitted_event_durable_when_future_resolves(
    producer: Producer, settings: BrokerSettings
) -> None:
    future = producer.submit_event(1, event("e1"))

    assert future.result(timeout=10) is None
    assert read_events(settings, 1) == [event("e1")]
    assert producer.state().published_events == 1


def test_single_events_batched_per_partition(producer: Producer, settings: BrokerSettings) -> None:
    futures = [producer.submit_event(i % PARTITIONS, event(f"e{i}")) for i in range(400)]
    for future in futures:
        future.result(timeout=10)

    for partition in range(PARTITIONS):
        expected = [event(f"e{i}") for i in range(partition, 400, PARTITIONS)]
        assert read_events(settings, partition) == expected


def test_batch_events_limit_splits_batches(settings: BrokerSettings) -> None:
    small = with_changes(settings, batch_events=10, linger_ms=50.0)
    producer = Producer(LocalBroker(small), small)
    producer.start()
    try:
        futures = [producer.submit_event(0, event(f"e{i}")) for i in range(35)]
        for future in futures:
            future.result(timeout=10)
    finally:
        producer.close()

    async def sizes() -> list[int]:
        broker = LocalBroker(small)
        await broker.connect()
        try:
            return [
                len(decode_record_batch(m.payload))
                for m in await broker.read(TOPIC_EVENTS, 0, 0, 100)
            ]
        finally:
            await broker.close()

    counts = asyncio.run(sizes())
    assert sum(counts) == 35
    assert max(counts) <= 10


def test_records_and_events_keep_submission_order(
    producer: Producer, settings: BrokerSettings
) -> None:
    futures = [
        producer.submit_event(2, event("first")),
        producer.submit_records([(2, 2, batch("second", "third")), (3, 1, batch("elsewhere"))]),
        producer.submit_event(2, event("fourth")),
    ]
    for future in futures:
        future.result(timeout=10)

    assert read_events(settings, 2) == [event(x) for x in ("first", "second", "third", "fourth")]
    assert read_events(settings, 3) == [event("elsewhere")]


def test_threads_submitting_at_once_lose_nothing(
    producer: Producer, settings: BrokerSettings
) -> None:
    threads, per_thread = 8, 300
    errors: list[BaseException] = []

    def submit(worker: int) -> None:
        try:
            futures = [
                producer.submit_event(worker % PARTITIONS, event(f"w{worker}-{i}"))
                for i in range(per_thread)
            ]
            for future in futures:
                future.result(timeout=30)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    for partition in range(PARTITIONS):
        stored = [orjson.loads(e)["event_id"] for e in read_events(settings, partition)]
        for worker in range(partition, threads, PARTITIONS):
            mine = [label for label in stored if label.startswith(f"w{worker}-")]
            assert mine == [f"w{worker}-{i}" for i in range(per_thread)]
    assert producer.state().published_events == threads * per_thread


def test_queue_full_raises_and_recovers(settings: BrokerSettings) -> None:
    bounded = with_changes(settings, queue_events=10)
    broker = GatedBroker(bounded)
    producer = Producer(broker, bounded)
    producer.start()
    try:
        futures = [producer.submit_event(0, event(f"e{i}")) for i in range(6)]
        futures.append(producer.submit_records([(1, 4, batch("a", "b", "c", "d"))]))

        with pytest.raises(QueueFull, match="10 of 10 events"):
            producer.submit_event(0, event("one too many"))
        with pytest.raises(QueueFull):
            producer.submit_records([(1, 1, batch("also too many"))])
        assert producer.state().queue_events == 10

        broker.gate.set()
        for future in futures:
            future.result(timeout=10)
        assert producer.state().queue_events == 0
        producer.submit_event(0, event("fits again")).result(timeout=10)
    finally:
        broker.gate.set()
        producer.close()


def test_submit_outside_lifecycle_rejected(settings: BrokerSettings) -> None:
    producer = Producer(LocalBroker(settings), settings)

    with pytest.raises(BrokerError, match="not running"):
        producer.submit_event(0, event("early"))

    producer.start()
    producer.close()
    with pytest.raises(BrokerError, match="not running"):
        producer.submit_event(0, event("late"))


@pytest.mark.parametrize("partition", [-1, PARTITIONS])
def test_bad_partition_rejected(producer: Producer, partition: int) -> None:
    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        producer.submit_event(partition, event("x"))
    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        producer.submit_records([(partition, 1, batch("x"))])
    assert producer.state().queue_events == 0


def test_negative_event_count_rejected(producer: Producer) -> None:
    with pytest.raises(BrokerError, match="event count"):
        producer.submit_records([(0, -5, batch("x"))])


def test_empty_records_resolve_at_once(producer: Producer) -> None:
    assert producer.submit_records([]).result(timeout=1) is None


def test_close_drains_queue(settings: BrokerSettings) -> None:
    slow = with_changes(settings, linger_ms=20.0)
    producer = Producer(LocalBroker(slow), slow)
    producer.start()
    futures = [producer.submit_event(3, event(f"e{i}")) for i in range(50)]

    assert producer.close(timeout=10) is True

    assert all(f.done() and f.exception() is None for f in futures)
    assert len(read_events(settings, 3)) == 50


def test_broker_error_fails_futures(settings: BrokerSettings) -> None:
    producer = Producer(FailingBroker(settings, BrokerError("disk full")), settings)
    producer.start()
    try:
        future = producer.submit_event(0, event("lost?"))

        with pytest.raises(BrokerError, match="disk full"):
            future.result(timeout=10)
        state = producer.state()
        assert state.failed_events == 1
        assert state.queue_events == 0
    finally:
        producer.close()


def test_unavailable_without_spool_fails_futures(settings: BrokerSettings) -> None:
    producer = Producer(FailingBroker(settings, BrokerUnavailable("connection refused")), settings)
    producer.start()
    try:
        future = producer.submit_event(0, event("x"))

        with pytest.raises(BrokerUnavailable):
            future.result(timeout=10)
        assert producer.state().state == "disconnected"
    finally:
        producer.close()


async def test_send_event_awaits_durability(producer: Producer, settings: BrokerSettings) -> None:
    await producer.send_event(0, event("async"))
    await producer.send_records([(0, 1, batch("async-batch"))])

    stored = await asyncio.to_thread(read_events, settings, 0)
    assert stored == [event("async"), event("async-batch")]


def test_state_reports_local_backend(producer: Producer) -> None:
    state = producer.state()

    assert state.backend == "local"
    assert state.state == "connected"
    assert state.spool_messages == 0


def test_start_fails_when_log_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    settings = BrokerSettings(data_dir=blocker, partitions=PARTITIONS, retention_interval_seconds=0)
    producer = Producer(LocalBroker(settings), settings)

    with pytest.raises(BrokerError, match="cannot create the local log directory"):
        producer.start()


async def test_cancelled_waiter_leaves_others_waiting(producer: Producer) -> None:
    first = producer.submit_event(0, event("shared-1"))
    second = producer.submit_event(0, event("shared-2"))
    impatient = asyncio.ensure_future(asyncio.wrap_future(first))
    patient = asyncio.ensure_future(asyncio.wrap_future(second))

    impatient.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(patient, timeout=10)

    assert patient.exception() is None
    assert not second.cancelled()
    assert first.result(timeout=10) is None


def test_queue_byte_bound_raises(settings: BrokerSettings) -> None:
    bounded = with_changes(settings, queue_bytes=2048)
    broker = GatedBroker(bounded)
    producer = Producer(broker, bounded)
    producer.start()
    try:
        first = producer.submit_event(0, b"x" * 1500)

        with pytest.raises(QueueFull, match="1500 of 2048 bytes"):
            producer.submit_event(0, b"y" * 600)
        with pytest.raises(QueueFull, match="bytes"):
            producer.submit_records([(1, 1, b"z" * 4096)])

        broker.gate.set()
        first.result(timeout=10)
        producer.submit_event(0, b"y" * 600).result(timeout=10)
    finally:
        broker.gate.set()
        producer.close()


@pytest.mark.parametrize("payload", ["text", None, 42, ["list"]])
def test_non_bytes_payload_rejected(producer: Producer, payload: object) -> None:
    with pytest.raises(BrokerError, match="expected bytes"):
        producer.submit_event(0, payload)  # type: ignore[arg-type]
    with pytest.raises(BrokerError, match="expected bytes"):
        producer.submit_records([(0, 1, payload)])  # type: ignore[list-item]
    assert producer.state().queue_events == 0


def test_unexpected_failure_becomes_broker_error(settings: BrokerSettings) -> None:
    producer = Producer(FailingBroker(settings, RuntimeError("driver bug")), settings)
    producer.start()
    try:
        future = producer.submit_event(2, event("x"))

        with pytest.raises(BrokerError, match="publishing to partition 2 failed") as raised:
            future.result(timeout=10)
        assert isinstance(raised.value.__cause__, RuntimeError)
        assert producer.state().failed_events == 1
    finally:
        producer.close()


def test_send_event_waiters_resolve_when_durable(
    producer: Producer, settings: BrokerSettings
) -> None:
    async def send_all() -> None:
        await asyncio.gather(
            *(producer.send_event(i % 2, event(f"a{i}")) for i in range(50)),
            producer.send_records([(1, 2, batch("r1", "r2"))]),
        )

    asyncio.run(send_all())

    assert read_events(settings, 0) == [event(f"a{i}") for i in range(0, 50, 2)]
    assert len(read_events(settings, 1)) == 27


def test_cancelled_send_event_leaves_others_waiting(
    settings: BrokerSettings,
) -> None:
    gated = GatedBroker(settings)
    producer = Producer(gated, settings)
    producer.start()
    try:

        async def cancel_one() -> None:
            first = asyncio.ensure_future(producer.send_event(0, event("cancelled")))
            second = asyncio.ensure_future(producer.send_event(0, event("kept")))
            await asyncio.sleep(0.05)
            first.cancel()
            gated.gate.set()
            await second
            assert first.cancelled()

        asyncio.run(cancel_one())
    finally:
        producer.close()

    # Cancelling a waiter does not withdraw its event: it was queued and is made durable.
    assert read_events(settings, 0) == [event("cancelled"), event("kept")]


def test_send_event_raises_publish_error(settings: BrokerSettings) -> None:
    producer = Producer(FailingBroker(settings, BrokerError("disk on fire")), settings)
    producer.start()
    try:

        async def send_two() -> list[BaseException | None]:
            return await asyncio.gather(
                producer.send_event(0, event("x")),
                producer.send_event(0, event("y")),
                return_exceptions=True,
            )

        results = asyncio.run(send_two())
    finally:
        producer.close()

    assert [type(result) for result in results] == [BrokerError, BrokerError]


async def test_send_event_leaves_producer_loop_alone(producer: Producer) -> None:
    """A submit wakes the producer thread without a cross-thread call into an event loop.

    Such a call writes to the loop's self-pipe from the caller's thread, which
    releases the GIL on the request's event loop thread once per publish round.
    """
    producer_loop = producer._loop
    assert producer_loop is not None
    calls: list[str] = []
    original = producer_loop.call_soon_threadsafe

    def record(*args: object, **kwargs: object) -> object:
        calls.append(threading.current_thread().name)
        return original(*args, **kwargs)

    producer_loop.call_soon_threadsafe = record  # type: ignore[method-assign]
    try:
        for index in range(20):
            await producer.send_event(0, event(f"quiet-{index}"))
    finally:
        del producer_loop.call_soon_threadsafe

    assert calls == []


def test_round_fails_when_io_loop_stopped(settings: BrokerSettings) -> None:
    """Rounds that need the io thread's loop fail with BrokerError once that loop is gone."""
    producer = Producer(FailingBroker(settings, BrokerError("unused")), settings)
    producer.start()
    loop, stop = producer._loop, producer._stop
    assert loop is not None
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    assert producer._io_thread is not None
    producer._io_thread.join(10)

    future = producer.submit_event(0, event("late"))

    with pytest.raises(BrokerError, match="publishing failed"):
        future.result(10)
    producer.close()


class SlowBroker(LocalBroker):
    """A local log whose publish takes `delay` seconds, so a round outlasts a short close."""

    def __init__(self, settings: BrokerSettings, delay: float) -> None:
        super().__init__(settings)
        self.delay = delay

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        await asyncio.sleep(self.delay)
        await super().publish(topic, partition, payloads)


def test_close_timeout_lets_running_round_finish(settings: BrokerSettings) -> None:
    """A close that times out mid-round neither cancels the round nor closes the broker under it."""
    producer = Producer(SlowBroker(settings, delay=1.5), settings)
    producer.start()
    futures = [
        producer.submit_event(index % PARTITIONS, event(f"slow-{index}")) for index in range(8)
    ]
    time.sleep(0.2)  # the round is publishing now

    assert producer.close(timeout=0.2) is False

    for future in futures:
        assert future.result(10) is None
    assert producer.state().queue_events == 0
    stored = sum(len(read_events(settings, partition)) for partition in range(PARTITIONS))
    assert stored == 8
    assert producer.close(timeout=10) is True
