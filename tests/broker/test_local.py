"""Tests of the local log backend: offsets, groups, membership, retention and bad input."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker.conftest import PARTITIONS, batch, with_changes
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    """A settable wall clock in seconds, so membership and retention tests never sleep."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_publish_poll_commit_resume(broker: LocalBroker) -> None:
    await broker.publish(TOPIC_EVENTS, 2, [batch("a"), batch("b"), batch("c")])

    first = await broker.poll(TOPIC_EVENTS, "archiver", 2, 2)
    assert [m.offset for m in first] == [0, 1]
    assert [decode_record_batch(m.payload) for m in first] == [
        [b'{"event_id":"a"}'],
        [b'{"event_id":"b"}'],
    ]
    assert all(m.partition == 2 for m in first)

    await broker.commit(TOPIC_EVENTS, "archiver", 2, 1)
    assert await broker.committed(TOPIC_EVENTS, "archiver", 2) == 1
    rest = await broker.poll(TOPIC_EVENTS, "archiver", 2, 10)
    assert [m.offset for m in rest] == [2]

    other_group = await broker.poll(TOPIC_EVENTS, "webhook", 2, 10)
    assert [m.offset for m in other_group] == [0, 1, 2]
    assert await broker.committed(TOPIC_EVENTS, "webhook", 2) is None


async def test_offsets_survive_reopen(settings: BrokerSettings) -> None:
    first = LocalBroker(settings)
    await first.connect()
    await first.publish(TOPIC_EVENTS, 0, [b"one", b"two"])
    await first.commit(TOPIC_EVENTS, "stats", 0, 0)
    await first.close()

    second = LocalBroker(settings)
    await second.connect()
    try:
        assert await second.append(TOPIC_EVENTS, 0, [b"three"]) == 2
        assert await second.end_offset(TOPIC_EVENTS, 0) == 2
        assert await second.committed(TOPIC_EVENTS, "stats", 0) == 0
        polled = await second.poll(TOPIC_EVENTS, "stats", 0, 10)
        assert [m.payload for m in polled] == [b"two", b"three"]
    finally:
        await second.close()


async def test_partitions_are_independent(broker: LocalBroker) -> None:
    await broker.publish(TOPIC_EVENTS, 0, [b"a"])
    await broker.publish(TOPIC_EVENTS, 3, [b"b", b"c"])

    assert await broker.end_offset(TOPIC_EVENTS, 0) == 0
    assert await broker.end_offset(TOPIC_EVENTS, 1) is None
    assert await broker.end_offset(TOPIC_EVENTS, 3) == 1
    assert await broker.read(TOPIC_EVENTS, 3, 1, 10) == await broker.read(TOPIC_EVENTS, 3, 1, 1)


async def test_topics_are_independent(broker: LocalBroker) -> None:
    await broker.publish("events", 1, [b"raw"])
    await broker.publish("events-clean", 1, [b"clean"])

    assert [m.payload for m in await broker.read("events", 1, 0, 10)] == [b"raw"]
    assert [m.payload for m in await broker.read("events-clean", 1, 0, 10)] == [b"clean"]


async def test_corrupt_payload_returned_as_is(broker: LocalBroker) -> None:
    garbage = [b"", b"\x00\xff not a record batch", b"\x01\x00\x00\x00\x05truncated"]
    await broker.publish(TOPIC_EVENTS, 1, garbage)

    messages = await broker.poll(TOPIC_EVENTS, "filter", 1, 10)
    assert [m.payload for m in messages] == garbage
    stats = await broker.stats(TOPIC_EVENTS, 1)
    assert stats.messages == 3
    assert stats.events == 5  # read from the third payload's header, never decoded


async def test_empty_publish_appends_nothing(broker: LocalBroker) -> None:
    assert await broker.append(TOPIC_EVENTS, 0, []) is None
    assert await broker.end_offset(TOPIC_EVENTS, 0) is None


@pytest.mark.parametrize("partition", [-1, PARTITIONS, 10**9])
async def test_partition_out_of_range_rejected(broker: LocalBroker, partition: int) -> None:
    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        await broker.publish(TOPIC_EVENTS, partition, [b"x"])
    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        await broker.poll(TOPIC_EVENTS, "g", partition, 1)


@pytest.mark.parametrize("topic", ["", "../escape", "a/b", ".hidden", "x" * 101, "events\x00"])
async def test_hostile_topic_name_rejected(broker: LocalBroker, topic: str, data_dir: Path) -> None:
    with pytest.raises(BrokerError, match="invalid topic name"):
        await broker.publish(topic, 0, [b"x"])
    assert not (data_dir / "escape").exists()


@pytest.mark.parametrize("group", ["", "a b", "../g", "g" * 101])
async def test_hostile_group_name_rejected(broker: LocalBroker, group: str) -> None:
    with pytest.raises(BrokerError, match="invalid group name"):
        await broker.commit(TOPIC_EVENTS, group, 0, 0)


async def test_commit_past_end_rejected(broker: LocalBroker) -> None:
    await broker.publish(TOPIC_EVENTS, 0, [b"only"])

    with pytest.raises(BrokerError, match="the newest offset is 0"):
        await broker.commit(TOPIC_EVENTS, "g", 0, 1)
    with pytest.raises(BrokerError, match="at least 0"):
        await broker.commit(TOPIC_EVENTS, "g", 0, -1)
    assert await broker.committed(TOPIC_EVENTS, "g", 0) is None


async def test_use_before_connect_rejected(settings: BrokerSettings) -> None:
    broker = LocalBroker(settings)

    with pytest.raises(BrokerError, match="call connect"):
        await broker.publish(TOPIC_EVENTS, 0, [b"x"])


async def test_concurrent_appends_keep_offsets_dense(broker: LocalBroker) -> None:
    labels = [f"m{i}".encode() for i in range(200)]

    await asyncio.gather(*(broker.publish(TOPIC_EVENTS, 1, [label]) for label in labels))

    messages = await broker.read(TOPIC_EVENTS, 1, 0, 1000)
    assert [m.offset for m in messages] == list(range(200))
    assert sorted(m.payload for m in messages) == sorted(labels)


async def test_large_payload_round_trips(broker: LocalBroker) -> None:
    payload = bytes(range(256)) * 40_000  # about 10 MB

    await broker.publish(TOPIC_EVENTS, 0, [payload])

    (message,) = await broker.read(TOPIC_EVENTS, 0, 0, 1)
    assert message.payload == payload


def test_processes_publish_without_loss_or_reorder(data_dir: Path) -> None:
    processes, count = 4, 150
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.broker.publisher_process",
                str(data_dir),
                str(PARTITIONS),
                f"w{n}",
                str(count),
                "normal",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    acknowledged = set()
    for child in children:
        output, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        acknowledged.update(tuple(line.split(" ")) for line in output.splitlines())

    async def read_all() -> dict[int, list[tuple[int, bytes]]]:
        broker = LocalBroker(
            BrokerSettings(data_dir=data_dir, partitions=PARTITIONS, retention_interval_seconds=0)
        )
        await broker.connect()
        try:
            return {
                p: [(m.offset, m.payload) for m in await broker.read(TOPIC_EVENTS, p, 0, 10_000)]
                for p in range(PARTITIONS)
            }
        finally:
            await broker.close()

    stored = asyncio.run(read_all())
    assert len(acknowledged) == processes * count
    for partition, messages in stored.items():
        assert [offset for offset, _ in messages] == list(range(len(messages)))
        for writer in range(processes):
            sequence = [
                int(p.split(b":")[1]) for _, p in messages if p.startswith(f"w{writer}:".encode())
            ]
            assert sequence == sorted(sequence), f"partition {partition} reordered writer {writer}"
    stored_lines = {
        (str(p), str(offset), payload.decode())
        for p, messages in stored.items()
        for offset, payload in messages
    }
    assert stored_lines == acknowledged


async def test_members_split_partitions(settings: BrokerSettings) -> None:
    clock = FakeClock()
    broker = LocalBroker(settings, clock=clock)
    await broker.connect()
    try:
        await broker.join_group(TOPIC_EVENTS, "hot", "member-b")
        await broker.join_group(TOPIC_EVENTS, "hot", "member-a")

        a = await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-a")
        b = await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-b")
        assert a == [0, 2]
        assert b == [1, 3]
        assert await broker.assigned_partitions(TOPIC_EVENTS, "hot", "stranger") == []
        assert await broker.assigned_partitions(TOPIC_EVENTS, "other-group", "member-a") == []
    finally:
        await broker.close()


async def test_dead_member_partitions_taken_over(settings: BrokerSettings) -> None:
    clock = FakeClock()
    broker = LocalBroker(settings, clock=clock)
    await broker.connect()
    try:
        await broker.join_group(TOPIC_EVENTS, "hot", "member-a")
        await broker.join_group(TOPIC_EVENTS, "hot", "member-b")

        clock.now += settings.session_timeout_seconds * 0.6
        await broker.join_group(TOPIC_EVENTS, "hot", "member-a")
        assert await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-a") == [0, 2]

        clock.now += settings.session_timeout_seconds * 0.6  # member-b missed its heartbeat
        await broker.join_group(TOPIC_EVENTS, "hot", "member-a")
        assert await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-a") == [0, 1, 2, 3]
        assert await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-b") == []

        await broker.join_group(TOPIC_EVENTS, "hot", "member-b")  # it comes back
        assert await broker.assigned_partitions(TOPIC_EVENTS, "hot", "member-b") == [1, 3]
    finally:
        await broker.close()


async def test_leaving_member_hands_over_at_once(broker: LocalBroker) -> None:
    await broker.join_group(TOPIC_EVENTS, "sse", "member-a")
    await broker.join_group(TOPIC_EVENTS, "sse", "member-b")

    await broker.leave_group(TOPIC_EVENTS, "sse", "member-b")

    assert await broker.assigned_partitions(TOPIC_EVENTS, "sse", "member-a") == [0, 1, 2, 3]
    assert await broker.live_members(TOPIC_EVENTS, "sse") == ["member-a"]


async def test_members_in_two_processes_share_membership(settings: BrokerSettings) -> None:
    first, second = LocalBroker(settings), LocalBroker(settings)
    await first.connect()
    await second.connect()
    try:
        await first.join_group(TOPIC_EVENTS, "warm", "member-a")
        await second.join_group(TOPIC_EVENTS, "warm", "member-b")

        assert await first.live_members(TOPIC_EVENTS, "warm") == ["member-a", "member-b"]
        assert await second.assigned_partitions(TOPIC_EVENTS, "warm", "member-b") == [1, 3]
    finally:
        await first.close()
        await second.close()


async def test_retention_keeps_unconsumed_messages(settings: BrokerSettings) -> None:
    clock = FakeClock()
    broker = LocalBroker(with_changes(settings, retention_consumed_seconds=60.0), clock=clock)
    await broker.connect()
    try:
        await broker.publish(TOPIC_EVENTS, 0, [b"m0", b"m1", b"m2", b"m3"])
        await broker.commit(TOPIC_EVENTS, "fast", 0, 2)
        await broker.commit(TOPIC_EVENTS, "slow", 0, 0)

        assert await broker.apply_retention(TOPIC_EVENTS) == 0  # not old enough yet

        clock.now += 61
        assert await broker.apply_retention(TOPIC_EVENTS) == 1  # only what "slow" has committed
        assert [m.offset for m in await broker.read(TOPIC_EVENTS, 0, 0, 10)] == [1, 2, 3]

        await broker.commit(TOPIC_EVENTS, "slow", 0, 3)
        assert await broker.apply_retention(TOPIC_EVENTS) == 2  # "fast" is still at offset 2
        assert [m.offset for m in await broker.read(TOPIC_EVENTS, 0, 0, 10)] == [3]
        assert await broker.append(TOPIC_EVENTS, 0, [b"m4"]) == 4  # offsets never restart
    finally:
        await broker.close()


async def test_retention_max_age_drops_unread(settings: BrokerSettings) -> None:
    clock = FakeClock()
    changed = with_changes(settings, retention_max_age_seconds=3600.0, retention_batch_rows=2)
    broker = LocalBroker(changed, clock=clock)
    await broker.connect()
    try:
        await broker.publish(TOPIC_EVENTS, 1, [b"old0", b"old1", b"old2"])
        clock.now += 1800
        await broker.publish(TOPIC_EVENTS, 1, [b"new"])
        clock.now += 1801

        assert await broker.apply_retention(TOPIC_EVENTS) == 3
        assert [m.payload for m in await broker.read(TOPIC_EVENTS, 1, 0, 10)] == [b"new"]
    finally:
        await broker.close()


async def test_retention_size_cap_drops_consumed_only(settings: BrokerSettings) -> None:
    changed = with_changes(settings, retention_max_bytes=250, retention_consumed_seconds=10**6)
    broker = LocalBroker(changed)
    await broker.connect()
    try:
        await broker.publish(TOPIC_EVENTS, 2, [bytes(100)] * 5)
        await broker.commit(TOPIC_EVENTS, "g", 2, 1)

        assert (
            await broker.apply_retention(TOPIC_EVENTS) == 2
        )  # cap exceeded, but only 0..1 consumed
        stats = await broker.stats(TOPIC_EVENTS, 2)
        assert stats.bytes == 300
        assert stats.first_offset == 2

        await broker.commit(TOPIC_EVENTS, "g", 2, 4)
        assert await broker.apply_retention(TOPIC_EVENTS) == 1  # down to the cap, no further
        assert (await broker.stats(TOPIC_EVENTS, 2)).bytes == 200
    finally:
        await broker.close()


async def test_truncate_removes_prefix(broker: LocalBroker) -> None:
    await broker.publish(TOPIC_EVENTS, 0, [b"a", b"b", b"c"])

    assert await broker.truncate(TOPIC_EVENTS, 0, 1) == 2

    assert [m.payload for m in await broker.read(TOPIC_EVENTS, 0, 0, 10)] == [b"c"]
    assert (await broker.stats(TOPIC_EVENTS, 0)).bytes == 1


async def test_healthy_when_directory_writable(broker: LocalBroker) -> None:
    assert await broker.healthy() is True


async def test_lease_has_one_owner(settings: BrokerSettings) -> None:
    clock = FakeClock()
    broker = LocalBroker(settings, clock=clock)
    await broker.connect()
    try:
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "a", 30) is True
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "b", 30) is False
        assert await broker.acquire_lease(TOPIC_EVENTS, 1, "forwarder", "b", 30) is True

        clock.now += 20
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "a", 30) is True  # renewed
        clock.now += 20
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "b", 30) is False

        clock.now += 11  # a's renewed lease has expired
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "b", 30) is True

        await broker.release_lease(TOPIC_EVENTS, 0, "forwarder", "a")  # not a's any more
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "a", 30) is False
        await broker.release_lease(TOPIC_EVENTS, 0, "forwarder", "b")
        assert await broker.acquire_lease(TOPIC_EVENTS, 0, "forwarder", "a", 30) is True
    finally:
        await broker.close()


async def test_lease_shared_across_brokers(settings: BrokerSettings) -> None:
    first, second = LocalBroker(settings), LocalBroker(settings)
    await first.connect()
    await second.connect()
    try:
        assert await first.acquire_lease(TOPIC_EVENTS, 2, "forwarder", "a", 30) is True
        assert await second.acquire_lease(TOPIC_EVENTS, 2, "forwarder", "b", 30) is False
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("payload", ["text", None, 7])
async def test_non_bytes_payload_rejected(broker: LocalBroker, payload: object) -> None:
    with pytest.raises(BrokerError, match="payloads must be bytes"):
        await broker.publish(TOPIC_EVENTS, 0, [b"fine", payload])  # type: ignore[list-item]

    assert await broker.end_offset(TOPIC_EVENTS, 0) is None


async def test_reads_during_writes_see_dense_prefix(settings: BrokerSettings) -> None:
    writer, reader = LocalBroker(settings), LocalBroker(settings)
    await writer.connect()
    await reader.connect()
    try:

        async def write() -> None:
            for index in range(60):
                await writer.publish(TOPIC_EVENTS, 1, [f"m{index}".encode()] * 3)

        async def read() -> list[int]:
            seen = []
            while len(seen) < 180:
                messages = await reader.read(TOPIC_EVENTS, 1, 0, 1000)
                assert [m.offset for m in messages] == list(range(len(messages)))
                seen = [m.offset for m in messages]
            return seen

        _, seen = await asyncio.gather(write(), read())
        assert seen == list(range(180))
    finally:
        await writer.close()
        await reader.close()


async def test_corrupt_partition_file_reports_error(settings: BrokerSettings) -> None:
    damaged = settings.log_dir / TOPIC_EVENTS / "p0000.db"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"this is not an SQLite database" * 100)
    broker = LocalBroker(settings)
    await broker.connect()
    try:
        with pytest.raises(BrokerError, match=r"cannot open local log file .*p0000\.db"):
            await broker.publish(TOPIC_EVENTS, 0, [b"x"])
        await broker.publish(TOPIC_EVENTS, 1, [b"other partitions still work"])
        assert await broker.end_offset(TOPIC_EVENTS, 1) == 0
    finally:
        await broker.close()


async def test_unwritable_topic_directory_reports_error(
    broker: LocalBroker, settings: BrokerSettings
) -> None:
    (settings.log_dir / "events-clean").write_text("a file where the topic directory should be")

    with pytest.raises(BrokerError, match="local log operation failed"):
        await broker.publish("events-clean", 0, [b"x"])


async def test_append_waits_for_lock_file_holder(broker: LocalBroker) -> None:
    await broker.publish(TOPIC_EVENTS, 1, [batch("first")])
    path = broker.root / TOPIC_EVENTS / "p0001.db.lock"
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        append = asyncio.ensure_future(broker.append(TOPIC_EVENTS, 1, [batch("second")]))
        await asyncio.sleep(0.3)
        assert not append.done()
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)

    assert await asyncio.wait_for(append, timeout=10) == 1


def test_publish_blocking_appends_on_calling_thread(settings: BrokerSettings) -> None:
    broker = LocalBroker(settings)

    async def connect_publish_read() -> list[list[bytes]]:
        await broker.connect()
        try:
            broker.publish_blocking(TOPIC_EVENTS, 0, [batch("a"), batch("b")])
            broker.publish_blocking(TOPIC_EVENTS, 0, [])
            messages = await broker.read(TOPIC_EVENTS, 0, 0, 10)
        finally:
            await broker.close()
        return [decode_record_batch(message.payload) for message in messages]

    assert asyncio.run(connect_publish_read()) == [
        [b'{"event_id":"a"}'],
        [b'{"event_id":"b"}'],
    ]
    with pytest.raises(BrokerError):
        broker.publish_blocking(TOPIC_EVENTS, 0, [batch("closed")])
