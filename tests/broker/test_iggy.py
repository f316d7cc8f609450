"""Tests of the iggy backend: unreachable-server behaviour always, live tests when IGGY_URL is set."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker.iggy_server import live_url
from tests.conftest import free_port
from tracker.broker.iggy import IggyBroker, translate_error
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable

REPO = Path(__file__).resolve().parents[2]


def test_unreachable_server_spools(data_dir: Path) -> None:
    port = free_port()  # nothing listens here, so every connect is refused
    child = subprocess.run(
        [sys.executable, "-m", "tests.broker.iggy_unreachable_process", str(data_dir), str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # NOTE: apache-iggy 0.9.0 aborts the interpreter at exit (SIGABRT) in about half the runs
    # after a failed connect. Everything checked below was printed before that exit.
    assert child.returncode in (0, -signal.SIGABRT), child.stderr[-2000:]
    observed = orjson.loads(child.stdout.splitlines()[-1])

    assert "unreachable" in observed["connect_error"]
    assert observed["connect_seconds"] < 5
    assert observed["healthy"] is False
    assert observed["publish_error"] == "BrokerUnavailable"
    assert observed["backend"] == "iggy"
    assert observed["state"] == "spooling"
    assert observed["spool_events"] == 20
    assert observed["spool_messages"] == 4
    assert observed["forwarded"] == 0
    assert observed["state_after_forward"] == "spooling"
    assert observed["closed_cleanly"] is True


@pytest.mark.parametrize(
    "message",
    [
        "Cannot establish connection",
        "Connection reset by peer",
        "Disconnected",
        "request timed out",
    ],
)
def test_connection_errors_are_unavailable(message: str) -> None:
    error = translate_error(RuntimeError(message), "send messages", "127.0.0.1:8090")

    assert isinstance(error, BrokerUnavailable)
    assert "127.0.0.1:8090" in str(error)


@pytest.mark.parametrize(
    "message", ["Invalid message payload size", "Topic not found", "Invalid partition id"]
)
def test_other_errors_are_not_retryable(message: str) -> None:
    error = translate_error(RuntimeError(message), "send messages", "127.0.0.1:8090")

    assert type(error) is BrokerError
    assert message in str(error)


async def test_use_before_connect_is_unavailable() -> None:
    broker = IggyBroker(BrokerSettings())

    with pytest.raises(BrokerUnavailable, match="call connect"):
        await broker.publish("events", 0, [b"x"])
    assert await broker.healthy() is False


async def test_bad_partition_rejected_before_network() -> None:
    broker = IggyBroker(BrokerSettings(partitions=4))

    with pytest.raises(BrokerError, match=r"partition must be in 0\.\.3"):
        await broker.publish("events", 4, [b"x"])


@pytest.mark.parametrize("payload", [b"", "text"])
async def test_invalid_payload_rejected_before_network(payload: object) -> None:
    broker = IggyBroker(BrokerSettings(partitions=4))

    with pytest.raises(BrokerError, match="rejected a payload") as raised:
        await broker.publish("events", 0, [payload])  # type: ignore[list-item]
    assert not isinstance(raised.value, BrokerUnavailable)


# Live tests against a real Iggy server: IGGY_URL, or one started from IGGY_SERVER_BIN.


@pytest.fixture(scope="module")
def iggy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from live_url(tmp_path_factory)


def live_settings(url: str, **changes: object) -> BrokerSettings:
    values: dict[str, object] = {
        "backend": "iggy",
        "iggy_url": url,
        "iggy_stream": f"test-{uuid.uuid4().hex[:8]}",
        "partitions": 4,
        "session_timeout_seconds": 5.0,
    }
    values.update(changes)
    return BrokerSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def live_broker(iggy_url: str) -> AsyncIterator[IggyBroker]:
    broker = IggyBroker(live_settings(iggy_url))
    await broker.connect()
    yield broker
    await broker.close()


async def test_live_publish_poll_commit(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 1, [b"m0", b"m1", b"m2"])

    polled = await live_broker.poll("events", "archiver", 1, 10)
    assert [m.payload for m in polled] == [b"m0", b"m1", b"m2"]
    assert [m.offset for m in polled] == [0, 1, 2]
    assert await live_broker.end_offset("events", 1) == 2

    await live_broker.commit("events", "archiver", 1, 1)
    assert await live_broker.committed("events", "archiver", 1) == 1
    assert [m.payload for m in await live_broker.poll("events", "archiver", 1, 10)] == [b"m2"]
    assert [m.payload for m in await live_broker.read("events", 1, 1, 10)] == [b"m1", b"m2"]


async def test_live_committed_none_before_commit(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 2, [b"a", b"b"])

    assert await live_broker.committed("events", "fresh", 2) is None
    # A poll without auto-commit must not store an offset.
    await live_broker.poll("events", "fresh", 2, 10)
    assert await live_broker.committed("events", "fresh", 2) is None


async def test_live_groups_keep_own_offsets(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 0, [b"a", b"b", b"c"])

    await live_broker.commit("events", "first", 0, 2)
    await live_broker.commit("events", "second", 0, 0)

    assert await live_broker.committed("events", "first", 0) == 2
    assert await live_broker.committed("events", "second", 0) == 0
    assert await live_broker.poll("events", "first", 0, 10) == []
    assert [m.payload for m in await live_broker.poll("events", "second", 0, 10)] == [b"b", b"c"]


async def test_live_commit_can_move_back(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 0, [b"a", b"b", b"c"])

    await live_broker.commit("events", "g", 0, 2)
    await live_broker.commit("events", "g", 0, 0)

    assert await live_broker.committed("events", "g", 0) == 0


async def test_live_commit_past_end_rejected(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 3, [b"a"])

    with pytest.raises(BrokerError, match="the newest offset is 0") as raised:
        await live_broker.commit("events", "g", 3, 1)
    assert not isinstance(raised.value, BrokerUnavailable)
    with pytest.raises(BrokerError, match="it is empty"):
        await live_broker.commit("events", "g", 2, 0)
    assert await live_broker.committed("events", "g", 3) is None


async def test_live_offsets_survive_reconnect(iggy_url: str) -> None:
    settings = live_settings(iggy_url)
    first = IggyBroker(settings)
    await first.connect()
    await first.publish("events-clean", 1, [b"a", b"b"])
    await first.commit("events-clean", "hot-writer", 1, 0)
    await first.close()

    second = IggyBroker(settings)
    await second.connect()
    try:
        assert await second.committed("events-clean", "hot-writer", 1) == 0
        assert [m.payload for m in await second.poll("events-clean", "hot-writer", 1, 10)] == [b"b"]
    finally:
        await second.close()


async def test_live_partitions_are_separate(live_broker: IggyBroker) -> None:
    for partition in range(4):
        await live_broker.publish(
            "events", partition, [f"p{partition}-{i}".encode() for i in range(partition + 1)]
        )

    for partition in range(4):
        assert await live_broker.end_offset("events", partition) == partition
        read = await live_broker.read("events", partition, 0, 100)
        assert [m.payload for m in read] == [
            f"p{partition}-{i}".encode() for i in range(partition + 1)
        ]
        assert {m.partition for m in read} == {partition}


async def test_live_end_offset_empty_is_none(live_broker: IggyBroker) -> None:
    assert await live_broker.end_offset("events", 0) is None
    assert await live_broker.read("events", 0, 0, 10) == []
    assert await live_broker.poll("events", "g", 0, 10) == []


async def test_live_concurrent_publishes_all_stored(live_broker: IggyBroker) -> None:
    async def send(index: int) -> None:
        await live_broker.publish("events", 1, [f"{index}-{j}".encode() for j in range(5)])

    await asyncio.gather(*(send(index) for index in range(20)))

    stored = await live_broker.read("events", 1, 0, 1000)
    assert len(stored) == 100
    assert sorted(m.payload for m in stored) == sorted(
        f"{index}-{j}".encode() for index in range(20) for j in range(5)
    )
    # Each publish is one request, so its 5 messages stay together and in order.
    for index in range(20):
        offsets = [m.offset for m in stored if m.payload.startswith(f"{index}-".encode())]
        assert offsets == list(range(offsets[0], offsets[0] + 5))


async def test_live_read_past_end_is_empty(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 0, [b"a"])

    assert await live_broker.read("events", 0, 5, 10) == []
    with pytest.raises(BrokerError, match="start offset must be at least 0"):
        await live_broker.read("events", 0, -1, 10)


async def test_live_long_group_name_rejected(live_broker: IggyBroker) -> None:
    await live_broker.publish("events", 0, [b"a"])

    with pytest.raises(BrokerError, match="invalid Iggy name"):
        await live_broker.commit("events", "g" * 300, 0, 0)


async def test_live_members_split_partitions(live_broker: IggyBroker) -> None:
    await live_broker.join_group("events", "hot", "member-a")
    await live_broker.join_group("events", "hot", "member-b")

    assert await live_broker.assigned_partitions("events", "hot", "member-a") == [0, 2]
    assert await live_broker.assigned_partitions("events", "hot", "member-b") == [1, 3]

    await live_broker.leave_group("events", "hot", "member-b")
    assert await live_broker.assigned_partitions("events", "hot", "member-a") == [0, 1, 2, 3]


async def test_live_silent_member_expires(iggy_url: str) -> None:
    broker = IggyBroker(live_settings(iggy_url, session_timeout_seconds=1.0))
    await broker.connect()
    try:
        await broker.join_group("events", "hot", "member-a")
        await broker.join_group("events", "hot", "member-b")
        await asyncio.sleep(0.6)
        await broker.join_group("events", "hot", "member-a")
        await asyncio.sleep(0.6)

        # member-b sent its last heartbeat 1.2 s ago, past the 1 s session timeout.
        assert await broker.live_members("events", "hot") == ["member-a"]
        assert await broker.assigned_partitions("events", "hot", "member-b") == []
    finally:
        await broker.close()


async def test_live_concurrent_connects_succeed(iggy_url: str) -> None:
    settings = live_settings(iggy_url)
    brokers = [IggyBroker(settings) for _ in range(4)]

    # All four find the stream missing, so all but one see "already exists" when they create it.
    results = await asyncio.gather(
        *(broker.connect() for broker in brokers), return_exceptions=True
    )

    assert results == [None] * 4
    for broker in brokers:
        await broker.close()


async def test_live_topics_created_durable(live_broker: IggyBroker) -> None:
    client = live_broker._client
    events = await client.get_topic(live_broker.stream, "events")
    members = await client.get_topic(live_broker.stream, "group-members")
    events_options = events.options.to_scalar_dict()
    members_options = members.options.to_scalar_dict()

    assert events.partitions_count == 4
    assert members.partitions_count == 1
    if not live_broker._legacy_topic_options:
        pytest.skip("this server accepted the SDK's durability option; no fallback to check")
    assert events_options == {"enforce_fsync": True, "messages_required_to_save": 1}
    assert members_options["message_expiry"] == 3_600_000_000  # one hour in microseconds


async def test_live_healthy(live_broker: IggyBroker) -> None:
    assert await live_broker.healthy() is True


async def test_live_wrong_password_fails(iggy_url: str) -> None:
    broker = IggyBroker(live_settings(iggy_url, iggy_password="not-the-password"))

    with pytest.raises(BrokerError):
        await broker.connect()
