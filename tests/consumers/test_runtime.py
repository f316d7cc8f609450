"""Consumer runtime against the real local broker: delivery, commits, retries, dead letters."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.consumers.conftest import (
    PARTITIONS,
    consumer_settings,
    make_event,
    open_local_broker,
    partition_of,
    publish,
    read_topic,
)
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS, Broker
from tracker.consumers.runtime import Batch, ConsumerRuntime, Sink, partition_status
from tracker.errors import RetryableSinkError

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


class RecordingSink(Sink):
    """Stores event ids in memory, deduplicated, and can fail on chosen calls."""

    source_topic = TOPIC_EVENTS

    def __init__(
        self, name: str = "recorder", *, fail_calls: dict[int, BaseException] | None = None
    ) -> None:
        self.name = name
        self.stored: set[str] = set()
        self.deliveries: list[str] = []
        self.batches: list[Batch] = []
        self.calls = 0
        self.fail_calls = fail_calls or {}
        self.opened = self.closed = False

    async def open(self, context: Any) -> None:
        self.opened = True

    async def process(self, batch: Batch) -> None:
        self.calls += 1
        error = self.fail_calls.get(self.calls)
        if error is not None:
            raise error
        self.batches.append(batch)
        for event in batch.events:
            self.deliveries.append(event["event_id"])
            self.stored.add(event["event_id"])

    async def close(self) -> None:
        self.closed = True


async def run_until(runtime: ConsumerRuntime, condition: Any, timeout: float = 30.0) -> None:
    """Run the runtime until `condition()` holds, then stop it and wait for it to return."""
    task = asyncio.create_task(runtime.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, timeout)


def events_for(count: int) -> list[dict[str, Any]]:
    return [make_event(TENANTS[i % len(TENANTS)], sub1=str(i)) for i in range(count)]


async def test_runtime_delivers_and_commits_every_event(broker: Broker, data_dir: Path) -> None:
    events = events_for(600)
    await publish(broker, TOPIC_EVENTS, events, per_message=50)
    sink = RecordingSink()
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))

    await run_until(runtime, lambda: len(sink.stored) == 600)

    assert sink.opened and sink.closed
    assert sink.stored == {event["event_id"] for event in events}
    assert len(sink.deliveries) == 600
    for row in await partition_status(broker, TOPIC_EVENTS, "recorder"):
        assert row.lag == 0
        assert row.committed == row.end


async def test_runtime_keeps_partition_order(broker: Broker, data_dir: Path) -> None:
    events = [make_event("acme", sub1=str(i)) for i in range(300)]
    await publish(broker, TOPIC_EVENTS, events, per_message=7)
    sink = RecordingSink()
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir, CONSUMER_POLL_MESSAGES="3"))

    await run_until(runtime, lambda: len(sink.stored) == 300)

    assert sink.deliveries == [event["event_id"] for event in events]
    assert max(len(batch.raw) for batch in sink.batches) <= 21


async def test_runtime_restart_resumes_after_commit(broker: Broker, data_dir: Path) -> None:
    first = events_for(120)
    await publish(broker, TOPIC_EVENTS, first)
    sink = RecordingSink()
    await run_until(
        ConsumerRuntime(sink, broker, consumer_settings(data_dir)), lambda: len(sink.stored) == 120
    )

    second = events_for(80)
    await publish(broker, TOPIC_EVENTS, second)
    restarted = RecordingSink()
    await run_until(
        ConsumerRuntime(restarted, broker, consumer_settings(data_dir)),
        lambda: len(restarted.stored) == 80,
    )
    await asyncio.sleep(0.1)

    assert restarted.stored == {event["event_id"] for event in second}
    assert len(restarted.deliveries) == 80


async def test_runtime_redelivers_after_fatal_error(broker: Broker, data_dir: Path) -> None:
    events = [make_event("acme", sub1=str(i)) for i in range(50)]
    await publish(broker, TOPIC_EVENTS, events, per_message=50)
    crashing = RecordingSink(fail_calls={1: RuntimeError("disk on fire")})
    runtime = ConsumerRuntime(crashing, broker, consumer_settings(data_dir))

    with pytest.raises(RuntimeError, match="disk on fire"):
        await asyncio.wait_for(runtime.run(), 10)

    assert crashing.closed
    assert await broker.committed(TOPIC_EVENTS, "recorder", partition_of("acme")) is None
    sink = RecordingSink()
    await run_until(
        ConsumerRuntime(sink, broker, consumer_settings(data_dir)), lambda: len(sink.stored) == 50
    )
    assert sink.deliveries == [event["event_id"] for event in events]


async def test_runtime_retries_retryable_error_with_backoff(broker: Broker, data_dir: Path) -> None:
    events = [make_event("acme", sub1=str(i)) for i in range(10)]
    await publish(broker, TOPIC_EVENTS, events)
    failures = {call: RetryableSinkError("database restarting") for call in (1, 2, 3, 4, 5)}
    sink = RecordingSink(fail_calls=failures)
    sleeps: list[float] = []
    committed_during_retries: list[int | None] = []

    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        committed_during_retries.append(
            await broker.committed(TOPIC_EVENTS, "recorder", partition_of("acme"))
        )

    settings = consumer_settings(
        data_dir, CONSUMER_RETRY_BASE_MS="100", CONSUMER_RETRY_MAX_MS="250"
    )
    runtime = ConsumerRuntime(sink, broker, settings, sleep=recording_sleep)
    await run_until(runtime, lambda: len(sink.stored) == 10)

    assert len(sleeps) == 5
    assert all(0 <= seconds <= 0.25 for seconds in sleeps)
    assert committed_during_retries == [None] * 5
    assert sink.deliveries == [event["event_id"] for event in events]
    sample = runtime.metrics.registry.get_sample_value
    assert sample("tracker_consumer_events_failed_total", {"consumer": "recorder"}) == 50
    assert sample("tracker_consumer_events_processed_total", {"consumer": "recorder"}) == 10


async def test_runtime_stop_during_retries_commits_nothing(broker: Broker, data_dir: Path) -> None:
    await publish(broker, TOPIC_EVENTS, [make_event("acme")])
    sink = RecordingSink(fail_calls={call: RetryableSinkError("down") for call in range(1, 1000)})
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))

    async def stop_on_sleep(seconds: float) -> None:
        runtime.request_stop()

    runtime._sleep = stop_on_sleep
    await asyncio.wait_for(runtime.run(), 10)

    assert sink.stored == set()
    assert await broker.committed(TOPIC_EVENTS, "recorder", partition_of("acme")) is None


async def test_runtime_dead_letters_undecodable_message(broker: Broker, data_dir: Path) -> None:
    partition = partition_of("acme")
    good_before = [make_event("acme", sub1="before")]
    good_after = [make_event("acme", sub1="after")]
    await publish(broker, TOPIC_EVENTS, good_before)
    await broker.publish(TOPIC_EVENTS, partition, [b"\x01garbage that is no record batch", b""])
    await publish(broker, TOPIC_EVENTS, good_after)
    sink = RecordingSink()

    await run_until(
        ConsumerRuntime(sink, broker, consumer_settings(data_dir)), lambda: len(sink.stored) == 2
    )

    assert sink.deliveries == [good_before[0]["event_id"], good_after[0]["event_id"]]
    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert len(letters) == 2
    assert all(letter["reason"].startswith("undecodable record batch") for letter in letters)
    assert base64.b64decode(letters[0]["payload_base64"]) == b"\x01garbage that is no record batch"
    assert letters[0]["consumer"] == "recorder"
    assert letters[0]["partition"] == partition
    assert await broker.committed(TOPIC_EVENTS, "recorder", partition) == await broker.end_offset(
        TOPIC_EVENTS, partition
    )


async def test_runtime_dead_letters_non_object_events(broker: Broker, data_dir: Path) -> None:
    from tracker._core import encode_record_batch

    partition = partition_of("acme")
    good = make_event("acme")
    payload = encode_record_batch([b"[1, 2]", b"{not json", orjson.dumps(good), b'"text"'])
    await broker.publish(TOPIC_EVENTS, partition, [payload])
    sink = RecordingSink()

    await run_until(
        ConsumerRuntime(sink, broker, consumer_settings(data_dir)), lambda: len(sink.stored) == 1
    )
    await asyncio.sleep(0.05)

    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert [letter["reason"] for letter in letters] == ["event is not a JSON object"] * 3
    assert base64.b64decode(letters[1]["payload_base64"]) == b"{not json"


class RejectingSink(RecordingSink):
    """Dead-letters every event whose sub1 param is "bad"."""

    async def process(self, batch: Batch) -> None:
        for index, event in enumerate(batch.events):
            if event["params"].get("sub1") == "bad":
                batch.dead_letter(index, "sub1 is bad")
            else:
                self.stored.add(event["event_id"])


async def test_sink_dead_letter_routes_single_event(broker: Broker, data_dir: Path) -> None:
    events = [
        make_event("acme", sub1="ok"),
        make_event("acme", sub1="bad"),
        make_event("acme", sub1="ok"),
    ]
    await publish(broker, TOPIC_EVENTS, events)
    sink = RejectingSink()
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))

    await run_until(runtime, lambda: len(sink.stored) == 2)
    await asyncio.sleep(0.05)

    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert len(letters) == 1
    assert letters[0]["reason"] == "sub1 is bad"
    assert letters[0]["event"] == events[1]
    sample = runtime.metrics.registry.get_sample_value
    assert sample("tracker_consumer_events_dead_lettered_total", {"consumer": "recorder"}) == 1


class RawSink(RecordingSink):
    """Reads undecoded documents and dead-letters those that are not JSON objects."""

    decode_events = False

    async def process(self, batch: Batch) -> None:
        self.batches.append(batch)
        for index, document in enumerate(batch.raw):
            try:
                event = orjson.loads(document)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                batch.dead_letter(index, "event is not a JSON object")
            elif event["params"].get("sub1") == "bad":
                batch.dead_letter(index, "sub1 is bad")
            else:
                self.stored.add(event["event_id"])


async def test_raw_sink_gets_documents_undecoded(broker: Broker, data_dir: Path) -> None:
    from tracker._core import encode_record_batch

    partition = partition_of("acme")
    good, bad = make_event("acme", sub1="ok"), make_event("acme", sub1="bad")
    documents = [orjson.dumps(good), b"{not json", orjson.dumps(bad), b"[1]"]
    await broker.publish(TOPIC_EVENTS, partition, [encode_record_batch(documents)])
    sink = RawSink()
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))

    await run_until(runtime, lambda: len(sink.stored) == 1)
    await asyncio.sleep(0.05)

    assert sink.batches[0].events == []
    assert sink.batches[0].raw == documents
    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert [letter["reason"] for letter in letters] == [
        "event is not a JSON object",
        "sub1 is bad",
        "event is not a JSON object",
    ]
    assert base64.b64decode(letters[0]["payload_base64"]) == b"{not json"
    assert "event" not in letters[0]
    assert letters[1]["event"] == bad
    assert base64.b64decode(letters[2]["payload_base64"]) == b"[1]"
    sample = runtime.metrics.registry.get_sample_value
    assert sample("tracker_consumer_events_dead_lettered_total", {"consumer": "recorder"}) == 3
    assert await broker.committed(TOPIC_EVENTS, "recorder", partition) == 0


def test_batch_dead_letter_rejects_bad_index() -> None:
    batch = Batch(0, 0, 0, [{"event_id": "x"}], [b"{}"])
    with pytest.raises(IndexError, match="outside the batch"):
        batch.dead_letter(1, "nope")


async def test_two_instances_split_partitions(broker: Broker, data_dir: Path) -> None:
    events = events_for(600)
    await publish(broker, TOPIC_EVENTS, events, per_message=10)
    first, second = RecordingSink(), RecordingSink()
    runtimes = [
        ConsumerRuntime(first, broker, consumer_settings(data_dir, CONSUMER_POLL_MESSAGES="1")),
        ConsumerRuntime(second, broker, consumer_settings(data_dir, CONSUMER_POLL_MESSAGES="1")),
    ]
    tasks = [asyncio.create_task(runtime.run()) for runtime in runtimes]
    try:
        async with asyncio.timeout(30):
            while len(first.stored | second.stored) < 600:
                await asyncio.sleep(0.02)
            while not (runtimes[0].assigned_partitions and runtimes[1].assigned_partitions):
                await asyncio.sleep(0.02)
    finally:
        for runtime in runtimes:
            runtime.request_stop()
        await asyncio.gather(*tasks)

    assert first.stored | second.stored == {event["event_id"] for event in events}
    owned = runtimes[0].assigned_partitions + runtimes[1].assigned_partitions
    assert sorted(owned) == list(range(PARTITIONS))


async def test_runtime_resumes_from_sink_stored_offsets(broker: Broker, data_dir: Path) -> None:
    events = [make_event("acme", sub1=str(i)) for i in range(30)]
    await publish(broker, TOPIC_EVENTS, events, per_message=10)
    partition = partition_of("acme")
    first_offset = (await broker.read(TOPIC_EVENTS, partition, 0, 1))[0].offset

    class StoringSink(RecordingSink):
        async def stored_offsets(self) -> dict[int, int]:
            return {partition: first_offset + 1}

    sink = StoringSink()
    await run_until(
        ConsumerRuntime(sink, broker, consumer_settings(data_dir)), lambda: len(sink.stored) == 10
    )
    await asyncio.sleep(0.05)

    assert sink.deliveries == [event["event_id"] for event in events[20:]]


async def test_metrics_endpoint_serves_consumer_metrics(broker: Broker, data_dir: Path) -> None:
    await publish(broker, TOPIC_EVENTS, events_for(12))
    sink = RecordingSink()
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    port = free_port()
    server = runtime.metrics.serve("127.0.0.1", port)
    try:
        await run_until(runtime, lambda: len(sink.stored) == 12)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()

    assert response.status_code == 200
    for name in (
        'tracker_consumer_events_processed_total{consumer="recorder"} 12.0',
        "tracker_consumer_events_failed_total",
        "tracker_consumer_events_dead_lettered_total",
        'tracker_consumer_lag_messages{consumer="recorder",partition=',
        "tracker_consumer_batch_seconds_bucket",
    ):
        assert name in response.text


async def test_partition_status_reports_lag(broker: Broker, data_dir: Path) -> None:
    await publish(broker, TOPIC_EVENTS, [make_event("acme") for _ in range(30)], per_message=10)
    partition = partition_of("acme")

    rows = await partition_status(broker, TOPIC_EVENTS, "recorder")

    assert len(rows) == PARTITIONS
    assert rows[partition].committed is None
    assert rows[partition].lag == 3
    assert sum(row.lag for row in rows) == 3


async def test_runtime_with_second_broker_handle(data_dir: Path) -> None:
    """A consumer on its own broker handle reads what another handle published."""
    producer = await open_local_broker(data_dir)
    consumer_broker = await open_local_broker(data_dir)
    try:
        events = events_for(40)
        await publish(producer, TOPIC_EVENTS, events)
        sink = RecordingSink()
        await run_until(
            ConsumerRuntime(sink, consumer_broker, consumer_settings(data_dir)),
            lambda: len(sink.stored) == 40,
        )
    finally:
        await producer.close()
        await consumer_broker.close()
    assert sink.stored == {event["event_id"] for event in events}
