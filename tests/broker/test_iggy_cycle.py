"""Live tests of the whole path on Iggy: `tracker serve` -> Iggy -> event-filter -> events-clean.

Each test starts its own iggy-server from IGGY_SERVER_BIN on loopback, so it
can stop and restart the server on the same data directory.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from tests.broker.iggy_server import IggyServer, live_server_or_skip
from tests.consumers.conftest import CHROME_LINUX, start_consumer
from tests.ingest.conftest import IngestServer, fire_postbacks, launch, stop_server
from tests.platform_up import wait_until
from tracker._core import decode_record_batch
from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN
from tracker.broker.iggy import IggyBroker
from tracker.broker.settings import BrokerSettings

PARTITIONS = 4
TENANTS = ("acme", "beta")


def iggy_env(server: IggyServer, stream: str) -> dict[str, str]:
    return {
        "BROKER": "iggy",
        "IGGY_URL": server.url,
        "IGGY_STREAM": stream,
        "IGGY_TIMEOUT_SECONDS": "1",
        "BROKER_PARTITIONS": str(PARTITIONS),
        "BROKER_RECONNECT_SECONDS": "0.5",
    }


def send_events(ingest: IngestServer, start: int, count: int) -> list[int]:
    """Send `count` page views per tenant numbered from `start`; return the HTTP statuses."""
    statuses = []
    for number in range(start, start + count):
        for tenant in TENANTS:
            reply = ingest.get(
                f"/p?key_prefix={tenant}&n={number}", headers={"User-Agent": CHROME_LINUX}
            )
            statuses.append(reply.status)
    return statuses


async def read_clean(server: IggyServer, stream: str) -> dict[int, list[tuple[str, int]]]:
    """Return (tenant, n) of every event in events-clean, per partition in offset order."""
    broker = IggyBroker(
        BrokerSettings(
            backend="iggy", iggy_url=server.url, iggy_stream=stream, partitions=PARTITIONS
        )
    )
    await broker.connect()
    found: dict[int, list[tuple[str, int]]] = {}
    try:
        for partition in range(PARTITIONS):
            start = 0
            while messages := await broker.read(TOPIC_EVENTS_CLEAN, partition, start, 100):
                for message in messages:
                    for document in decode_record_batch(message.payload):
                        params = orjson.loads(document)["params"]
                        found.setdefault(partition, []).append(
                            (params["key_prefix"], int(params["n"]))
                        )
                start = messages[-1].offset + 1
    finally:
        await broker.close()
    return found


def wait_clean(
    server: IggyServer, stream: str, expected: int, timeout: float = 60.0
) -> dict[int, list[tuple[str, int]]]:
    """Wait until events-clean contains `expected` events or `timeout` passes, then return them."""
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read_clean(server, stream))
        if sum(len(events) for events in found.values()) >= expected:
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def check_arrivals(found: dict[int, list[tuple[str, int]]], count: int) -> None:
    """Assert every (tenant, n) arrived once, and each tenant's n ascend within its partition."""
    arrived = [event for events in found.values() for event in events]
    assert sorted(arrived) == sorted((tenant, n) for tenant in TENANTS for n in range(count))
    for events in found.values():
        for tenant in TENANTS:
            numbers = [n for name, n in events if name == tenant]
            assert numbers == sorted(numbers)


def stop_consumer(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr.decode(errors="replace")[-3000:]


@pytest.mark.slow
def test_serve_filter_clean_cycle(tmp_path: Path) -> None:
    iggy = live_server_or_skip(tmp_path)
    stream = f"cycle-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "data"
    ingest = launch(data_dir, **iggy_env(iggy, stream))
    consumer = start_consumer("event-filter", data_dir, **iggy_env(iggy, stream))
    try:
        statuses = send_events(ingest, 0, 25)
        found = wait_clean(iggy, stream, 50)
        broker_health = ingest.get("/health/broker")
    finally:
        consumer_log = stop_consumer(consumer)
        exit_code = stop_server(ingest.process)
        ingest.registry.close()
        iggy.stop()

    assert statuses == [200] * 50
    assert broker_health.status == 200, broker_health.body
    check_arrivals(found, 25)
    assert exit_code == 0
    assert "Traceback" not in consumer_log


@pytest.mark.slow
def test_iggy_outage_spools_and_forwards(tmp_path: Path) -> None:
    iggy = live_server_or_skip(tmp_path)
    stream = f"outage-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "data"
    ingest = launch(data_dir, **iggy_env(iggy, stream))
    consumer = start_consumer("event-filter", data_dir, **iggy_env(iggy, stream))
    try:
        before = send_events(ingest, 0, 10)
        wait_clean(iggy, stream, 20, timeout=30)

        iggy.stop()
        during = send_events(ingest, 10, 10)
        time.sleep(1.5)  # the producer notices the failed send and starts spooling
        down_health = ingest.get("/health/broker")

        iggy.start()
        after = send_events(ingest, 20, 10)
        found = wait_clean(iggy, stream, 60)
        up_health = ingest.get("/health/broker")
    finally:
        consumer_log = stop_consumer(consumer)
        exit_code = stop_server(ingest.process)
        ingest.registry.close()
        iggy.stop()

    assert before == [200] * 20
    assert during == [200] * 20
    assert after == [200] * 20
    assert down_health.status == 503
    assert down_health.json()["state"] == "spooling"
    assert up_health.status == 200, up_health.body
    check_arrivals(found, 30)
    assert exit_code == 0
    assert "Traceback" not in consumer_log


async def read_event_ids(server: IggyServer, stream: str) -> list[str]:
    """Return the event_id of every event in the events topic, duplicates included."""
    broker = IggyBroker(
        BrokerSettings(
            backend="iggy", iggy_url=server.url, iggy_stream=stream, partitions=PARTITIONS
        )
    )
    await broker.connect()
    event_ids: list[str] = []
    try:
        for partition in range(PARTITIONS):
            start = 0
            while messages := await broker.read(TOPIC_EVENTS, partition, start, 100):
                for message in messages:
                    for document in decode_record_batch(message.payload):
                        event_ids.append(orjson.loads(document)["event_id"])
                start = messages[-1].offset + 1
    finally:
        await broker.close()
    return event_ids


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_iggy_stop_under_load_loses_nothing(tmp_path: Path, stop_signal: signal.Signals) -> None:
    iggy = live_server_or_skip(tmp_path)
    stream = f"load-{uuid.uuid4().hex[:8]}"
    ingest = launch(tmp_path / "data", **iggy_env(iggy, stream))
    stop = threading.Event()
    accepted: list[str] = []
    failures: list[str] = []

    def accepted_reach(count: int) -> bool:
        return len(accepted) >= count

    try:
        # Each of the three phases waits for 300 more accepted events and fails the test
        # after 20 s, so the eight senders run for at most 60 s.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(8):
                pool.submit(fire_postbacks, ingest, stop, accepted, failures, TENANTS, 10.0)
            try:
                wait_until(lambda: accepted_reach(300), 20, "300 events accepted with Iggy up")
                iggy.stop(stop_signal)
                stopped_at = len(accepted)
                wait_until(
                    lambda: accepted_reach(stopped_at + 300), 20, "300 events with Iggy down"
                )
                down_health = ingest.get("/health/broker")
                iggy.start()
                started_at = len(accepted)
                wait_until(lambda: accepted_reach(started_at + 300), 20, "300 events after restart")
            finally:
                stop.set()
        wait_until(
            lambda: ingest.get("/health/broker").status == 200, 60, "the spool to be forwarded"
        )
        stored = asyncio.run(read_event_ids(iggy, stream))
    finally:
        exit_code = stop_server(ingest.process)
        ingest.registry.close()
        iggy.stop()

    assert failures == []
    assert down_health.status == 503
    assert down_health.json()["state"] == "spooling"
    missing = set(accepted) - set(stored)
    assert len(missing) == 0, f"{len(missing)} of {len(accepted)} accepted events are missing"
    assert exit_code == 0


@pytest.mark.slow
def test_idle_iggy_outage_reported(tmp_path: Path) -> None:
    iggy = live_server_or_skip(tmp_path)
    ingest = launch(tmp_path / "data", **iggy_env(iggy, f"idle-{uuid.uuid4().hex[:8]}"))
    try:
        up_health = ingest.get("/health/broker")
        iggy.stop()
        # No event is sent, so only the health check every BROKER_RECONNECT_SECONDS notices.
        down_health = wait_until(
            lambda: (reply := ingest.get("/health/broker")).status == 503 and reply,
            15,
            "/health/broker to return 503",
        )
        iggy.start()
        back_health = wait_until(
            lambda: (reply := ingest.get("/health/broker")).status == 200 and reply,
            15,
            "/health/broker to return 200",
        )
        reply = ingest.get("/p?key_prefix=acme")
    finally:
        exit_code = stop_server(ingest.process)
        ingest.registry.close()
        iggy.stop()

    assert up_health.status == 200
    assert down_health.json()["state"] == "disconnected"
    assert back_health.json()["state"] == "connected"
    assert reply.status == 200
    assert exit_code == 0
