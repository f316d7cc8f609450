"""Tests of the producer spool: a remote broker that goes down and comes back loses nothing.

The remote broker here is a second local log behind a small subclass that
raises BrokerUnavailable while the test sets it "down". It replaces Iggy,
which does not run in this test environment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from tests.broker.conftest import PARTITIONS, batch, with_changes
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.producer import Producer
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable


class FlakyRemote(LocalBroker):
    """A local log in its own directory that is unreachable while `down` is set."""

    backend = "flaky-remote"

    def __init__(self, settings: BrokerSettings, root: Path) -> None:
        super().__init__(settings, root=root)
        self.down = False
        self.publish_calls = 0

    async def connect(self) -> None:
        if self.down:
            raise BrokerUnavailable("remote is down")
        await super().connect()

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        self.publish_calls += 1
        if self.down:
            raise BrokerUnavailable("remote is down")
        await super().publish(topic, partition, payloads)

    async def healthy(self) -> bool:
        return not self.down and await super().healthy()


def make_producer(settings: BrokerSettings, *, down: bool) -> tuple[Producer, FlakyRemote]:
    remote = FlakyRemote(settings, settings.data_dir / "remote")
    remote.down = down
    spool = LocalBroker(settings, root=settings.spool_dir)
    # A long reconnect interval, so only the test's forward_now() calls forward.
    producer = Producer(remote, with_changes(settings, reconnect_seconds=3600.0), spool=spool)
    return producer, remote


def remote_events(settings: BrokerSettings) -> dict[int, list[str]]:
    """Return the event ids the remote stores, per partition, in log order."""

    async def read() -> dict[int, list[str]]:
        broker = LocalBroker(settings, root=settings.data_dir / "remote")
        await broker.connect()
        try:
            stored: dict[int, list[str]] = {}
            for partition in range(PARTITIONS):
                messages = await broker.read(TOPIC_EVENTS, partition, 0, 100_000)
                stored[partition] = [
                    orjson.loads(event)["event_id"]
                    for m in messages
                    for event in decode_record_batch(m.payload)
                ]
            return stored
        finally:
            await broker.close()

    return asyncio.run(read())


def submit(producer: Producer, labels: list[str]) -> None:
    futures = [
        producer.submit_event(
            int(label.split("-")[1]) % PARTITIONS, orjson.dumps({"event_id": label})
        )
        for label in labels
    ]
    for future in futures:
        future.result(timeout=10)


def labels(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def test_spool_when_remote_down_at_start(settings: BrokerSettings) -> None:
    producer, remote = make_producer(settings, down=True)
    producer.start()
    try:
        submit(producer, labels("a", 40))
        state = producer.state()
        assert state.state == "spooling"
        assert state.spool_events == 40
        assert state.spool_messages >= PARTITIONS
        assert state.spooled_events == 40

        remote.down = False
        assert producer.forward_now() == state.spool_messages

        state = producer.state()
        assert state.state == "connected"
        assert state.spool_messages == 0
        assert state.spool_events == 0
    finally:
        producer.close()

    stored = remote_events(settings)
    for partition in range(PARTITIONS):
        assert stored[partition] == [f"a-{i}" for i in range(partition, 40, PARTITIONS)]


def test_outage_keeps_order_without_duplicates(settings: BrokerSettings) -> None:
    producer, remote = make_producer(settings, down=False)
    producer.start()
    try:
        submit(producer, [f"x-{i}" for i in range(0, 20)])
        assert producer.state().state == "connected"

        remote.down = True
        submit(producer, [f"x-{i}" for i in range(20, 40)])
        assert producer.state().state == "spooling"

        assert producer.forward_now() == 0  # still down: nothing leaves the spool
        assert producer.state().spool_events == 20

        remote.down = False
        # Still spooling until the forwarder ran, so these queue up behind the spool.
        submit(producer, [f"x-{i}" for i in range(40, 60)])
        assert producer.state().spool_events == 40
        calls_before = remote.publish_calls
        producer.forward_now()
        assert remote.publish_calls > calls_before

        submit(producer, [f"x-{i}" for i in range(60, 80)])
        state = producer.state()
        assert state.state == "connected"
        assert state.published_events == 40
        assert state.spooled_events == 40
    finally:
        producer.close()

    stored = remote_events(settings)
    for partition in range(PARTITIONS):
        assert stored[partition] == [f"x-{i}" for i in range(partition, 80, PARTITIONS)]


def test_spool_survives_producer_restart(settings: BrokerSettings) -> None:
    producer, _ = make_producer(settings, down=True)
    producer.start()
    submit(producer, labels("r", 12))
    producer.close()

    restarted, _ = make_producer(settings, down=False)
    restarted.start()
    try:
        state = restarted.state()
        assert state.state == "spooling"  # leftovers go first, so per-partition order is kept
        assert state.spool_events == 12

        restarted.forward_now()
        assert restarted.state().state == "connected"
    finally:
        restarted.close()

    stored = remote_events(settings)
    assert sorted(label for ids in stored.values() for label in ids) == sorted(labels("r", 12))


def test_records_spooled_unchanged(settings: BrokerSettings) -> None:
    producer, remote = make_producer(settings, down=True)
    producer.start()
    try:
        payload = batch("b-0", "b-1")
        producer.submit_records([(1, 2, payload)]).result(timeout=10)
        assert producer.state().spool_events == 2

        remote.down = False
        producer.forward_now()
    finally:
        producer.close()

    assert remote_events(settings)[1] == ["b-0", "b-1"]


def test_forwarder_runs_on_its_own(settings: BrokerSettings) -> None:
    remote = FlakyRemote(settings, settings.data_dir / "remote")
    remote.down = True
    producer = Producer(remote, settings, spool=LocalBroker(settings, root=settings.spool_dir))
    producer.start()
    try:
        submit(producer, labels("f", 8))
        remote.down = False

        assert producer.flush(timeout=5)
        for _ in range(200):
            if producer.state().state == "connected":
                break
            time.sleep(0.02)
        assert producer.state().state == "connected"
    finally:
        producer.close()

    stored = remote_events(settings)
    assert sorted(label for ids in stored.values() for label in ids) == sorted(labels("f", 8))


def wait_for_state(producer: Producer, state: str, timeout: float = 5.0) -> str:
    """Poll the producer state until it is `state` or `timeout` passes, and return the last state."""
    deadline = time.monotonic() + timeout
    while (current := producer.state().state) != state and time.monotonic() < deadline:
        time.sleep(0.02)
    return current


def test_idle_outage_reported_and_cleared(settings: BrokerSettings) -> None:
    remote = FlakyRemote(settings, settings.data_dir / "remote")
    producer = Producer(remote, settings, spool=LocalBroker(settings, root=settings.spool_dir))
    producer.start()
    try:
        assert producer.state().state == "connected"

        # No event is submitted, so only the periodic health check can notice the outage.
        remote.down = True
        assert wait_for_state(producer, "disconnected") == "disconnected"

        remote.down = False
        assert wait_for_state(producer, "connected") == "connected"
        submit(producer, labels("i", 4))
    finally:
        producer.close()

    assert remote.publish_calls >= 1
    stored = remote_events(settings)
    assert sorted(label for ids in stored.values() for label in ids) == sorted(labels("i", 4))


def test_two_producers_share_spool(settings: BrokerSettings) -> None:
    first, remote_a = make_producer(settings, down=True)
    second, remote_b = make_producer(settings, down=True)
    first.start()
    second.start()
    try:
        submit(first, labels("p", 20))
        submit(second, labels("q", 20))
        remote_a.down = remote_b.down = False

        first.forward_now()
        second.forward_now()
        first.forward_now()
        assert first.state().state == "connected"
        assert second.forward_now() == 0
    finally:
        first.close()
        second.close()

    stored = remote_events(settings)
    everything = [label for ids in stored.values() for label in ids]
    assert sorted(everything) == sorted(labels("p", 20) + labels("q", 20))
    for partition in range(PARTITIONS):
        for prefix in ("p", "q"):
            mine = [label for label in stored[partition] if label.startswith(prefix)]
            assert mine == [f"{prefix}-{i}" for i in range(partition, 20, PARTITIONS)]


def test_concurrent_forwarders_send_once(settings: BrokerSettings) -> None:
    first, remote_a = make_producer(settings, down=True)
    second, remote_b = make_producer(settings, down=True)
    first.start()
    second.start()
    try:
        submit(first, labels("s", 400))
        remote_a.down = remote_b.down = False

        results: list[int] = []
        threads = [
            threading.Thread(target=lambda p=p: results.append(p.forward_now()))
            for p in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first.forward_now()
        second.forward_now()

        assert first.state().spool_events == 0
    finally:
        first.close()
        second.close()

    stored = remote_events(settings)
    everything = [label for ids in stored.values() for label in ids]
    assert len(everything) == 400
    assert sorted(everything) == sorted(labels("s", 400))
    for partition in range(PARTITIONS):
        assert stored[partition] == [f"s-{i}" for i in range(partition, 400, PARTITIONS)]


@pytest.mark.parametrize("count", [1, 250])
def test_spool_counts_match_submitted(settings: BrokerSettings, count: int) -> None:
    producer, _ = make_producer(settings, down=True)
    producer.start()
    try:
        submit(producer, labels("c", count))

        assert producer.state().spool_events == count
        assert producer.state().queue_events == 0
    finally:
        producer.close()


class PickyRemote(FlakyRemote):
    """A remote that rejects for good any payload containing `poison`, like an oversized message."""

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        if not self.down and any(b"poison" in decode_record_batch(p)[0] for p in payloads):
            raise BrokerError("message too large")
        await super().publish(topic, partition, payloads)


def test_rejected_message_parked_not_blocking(settings: BrokerSettings) -> None:
    remote = PickyRemote(settings, settings.data_dir / "remote")
    remote.down = True
    spool = LocalBroker(settings, root=settings.spool_dir)
    producer = Producer(remote, with_changes(settings, reconnect_seconds=3600.0), spool=spool)
    producer.start()
    try:
        for label in ("k-0", "poison-0", "k-4"):
            producer.submit_event(0, orjson.dumps({"event_id": label})).result(timeout=10)
        remote.down = False

        producer.forward_now()

        assert producer.state().state == "connected"
        assert producer.state().spool_messages == 0
    finally:
        producer.close()

    assert remote_events(settings)[0] == ["k-0", "k-4"]

    async def parked() -> list[bytes]:
        broker = LocalBroker(settings, root=settings.spool_dir)
        await broker.connect()
        try:
            messages = await broker.read(TOPIC_DEAD_LETTERS, 0, 0, 10)
        finally:
            await broker.close()
        return [event for m in messages for event in decode_record_batch(m.payload)]

    assert asyncio.run(parked()) == [orjson.dumps({"event_id": "poison-0"})]
