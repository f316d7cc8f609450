"""Tests of the iggy backend: unreachable-server behaviour always, live tests when IGGY_URL is set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tracker.broker.iggy import IggyBroker, translate_error
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError, BrokerUnavailable

REPO = Path(__file__).resolve().parents[2]
LIVE = pytest.mark.skipif(
    not os.environ.get("IGGY_URL"), reason="needs a live Iggy server at IGGY_URL"
)


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


# Live tests against a real Iggy server.


@pytest.fixture
async def live_broker() -> AsyncIterator[IggyBroker]:
    settings = BrokerSettings(
        backend="iggy",
        iggy_url=os.environ.get("IGGY_URL", "127.0.0.1:8090"),
        iggy_stream=f"test-{uuid.uuid4().hex[:8]}",
        partitions=4,
        session_timeout_seconds=5.0,
    )
    broker = IggyBroker(settings)
    await broker.connect()
    yield broker
    await broker.close()


@LIVE
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


@LIVE
async def test_live_members_split_partitions(live_broker: IggyBroker) -> None:
    await live_broker.join_group("events", "hot", "member-a")
    await live_broker.join_group("events", "hot", "member-b")

    assert await live_broker.assigned_partitions("events", "hot", "member-a") == [0, 2]
    assert await live_broker.assigned_partitions("events", "hot", "member-b") == [1, 3]

    await live_broker.leave_group("events", "hot", "member-b")
    assert await live_broker.assigned_partitions("events", "hot", "member-a") == [0, 1, 2, 3]


@LIVE
async def test_live_healthy(live_broker: IggyBroker) -> None:
    assert await live_broker.healthy() is True
