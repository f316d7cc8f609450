"""Tests of how the iggy backend replaces an SDK client that lost the server.

No Iggy server runs in these tests: a fake SDK client replaces it. Like
the apache-iggy client, a fake client that saw the server go away stays
disconnected for good, so the backend must open a new one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import apache_iggy
import pytest

from tracker.broker.iggy import IggyBroker
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerUnavailable


@dataclass
class FakeServer:
    """Whether the server is up, and every client opened against it."""

    up: bool = True
    clients: list[FakeClient] = field(default_factory=list)
    sent: list[tuple[int, str, int]] = field(default_factory=list)


class FakeClient:
    """The part of apache_iggy.IggyClient the backend uses, against a FakeServer."""

    server: FakeServer

    def __init__(self, config: object) -> None:
        self.lost = False
        self.server.clients.append(self)

    def _check(self) -> None:
        if not self.server.up:
            self.lost = True
        if self.lost:
            raise RuntimeError("Client is not connected")

    async def connect(self) -> None:
        if not self.server.up:
            raise RuntimeError("Cannot establish connection")

    async def ping(self) -> None:
        self._check()

    async def get_stream(self, stream: str) -> object:
        self._check()
        return object()

    async def get_topic(self, stream: str, topic: str) -> object:
        self._check()
        return SimpleNamespace(partitions_count=4, partitions=[])

    async def send_messages(
        self, stream: str, topic: str, partitioning: object, messages: list[Any]
    ) -> None:
        self._check()
        index = self.server.clients.index(self)
        self.server.sent.append((index, topic, len(messages)))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    client_class = type("BoundFakeClient", (FakeClient,), {"server": fake})
    monkeypatch.setattr(apache_iggy, "IggyClient", client_class)
    return fake


def settings() -> BrokerSettings:
    return BrokerSettings(backend="iggy", partitions=4, iggy_timeout_seconds=1.0)


async def test_lost_client_replaced_after_restart(server: FakeServer) -> None:
    broker = IggyBroker(settings())
    await broker.connect()
    await broker.publish("events", 0, [b"a"])

    server.up = False
    with pytest.raises(BrokerUnavailable):
        await broker.publish("events", 0, [b"b"])
    with pytest.raises(BrokerUnavailable, match="unreachable"):
        await broker.publish("events", 0, [b"c"])
    assert await broker.healthy() is False

    server.up = True
    await broker.publish("events", 0, [b"d"])

    assert await broker.healthy() is True
    assert server.clients[0].lost is True
    assert server.sent == [(0, "events", 1), (len(server.clients) - 1, "events", 1)]


async def test_concurrent_calls_open_one_client(server: FakeServer) -> None:
    broker = IggyBroker(settings())
    await broker.connect()
    server.up = False
    with pytest.raises(BrokerUnavailable):
        await broker.publish("events", 0, [b"a"])
    opened_while_down = len(server.clients)

    server.up = True
    await asyncio.gather(*(broker.publish("events", p, [b"x"]) for p in range(4)))

    assert len(server.clients) == opened_while_down + 1
    assert len(server.sent) == 4


async def test_close_then_use_needs_connect(server: FakeServer) -> None:
    broker = IggyBroker(settings())
    await broker.connect()
    await broker.close()

    with pytest.raises(BrokerUnavailable, match="call connect"):
        await broker.publish("events", 0, [b"a"])
    assert await broker.healthy() is False
