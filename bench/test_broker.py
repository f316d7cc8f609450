"""Benchmarks of the local log and the producer: publish throughput and submit-to-durable latency.

Throughput: rounds of 24 pre-encoded record batches of 1,000 realistic events
each, into the local log and, as the baseline in the same run, as raw SQLite
inserts of the same blobs into one WAL table. `extra_info` carries events/s.

Latency: the time from `Producer.submit_event` to its future resolving, one
event in flight at a time and in a burst, with a single-row SQLite
insert-and-commit as the baseline. `extra_info` carries p50/p99 in ms.

Run: `pytest bench/test_broker.py --benchmark-only --benchmark-json=bench/results/<name>.json`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tracker._core import encode_record_batch, uuid7
from tracker.broker.local import LocalBroker
from tracker.broker.producer import Producer
from tracker.broker.settings import BrokerSettings

EVENTS_PER_BATCH = 1000
BATCHES_PER_ROUND = 24
ROUNDS = 30


def realistic_event(index: int) -> bytes:
    """Return one event JSON document shaped like production traffic (about 450 bytes)."""
    return orjson.dumps(
        {
            "event_id": uuid7(),
            "event_type": "click" if index % 3 else "postback",
            "timestamp": 1_770_704_294_008 + index,
            "ip": f"203.0.113.{index % 250}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Safari/537.36",
            "referer": "https://news.example.com/article/2026/launch",
            "accept_language": "en-US,en;q=0.9",
            "request_path": "/t",
            "request_host": "track.example.com",
            "params": {
                "key_prefix": f"tenant{index % 40}",
                "campaign_id": f"camp_{index % 997}",
                "sub1": f"src-{index % 13}",
                "click_ref": f"{index:012d}",
            },
        }
    )


@pytest.fixture(scope="module")
def batches() -> list[bytes]:
    """24 record batches of 1,000 distinct events each."""
    return [
        encode_record_batch(
            [realistic_event(b * EVENTS_PER_BATCH + i) for i in range(EVENTS_PER_BATCH)]
        )
        for b in range(BATCHES_PER_ROUND)
    ]


def events_per_second(benchmark: object, events: int) -> float:
    mean = benchmark.stats.stats.mean  # type: ignore[attr-defined]
    return events / mean


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_raw_sqlite_insert_baseline(
    benchmark, tmp_path: Path, batches: list[bytes], sync: str
) -> None:
    connection = sqlite3.connect(tmp_path / "raw.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {sync.upper()}")
    connection.execute(
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, timestamp_ms INTEGER, payload BLOB)"
    )

    def insert_round() -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO blobs (timestamp_ms, payload) VALUES (?, ?)",
            [(0, blob) for blob in batches],
        )
        connection.execute("COMMIT")

    benchmark.pedantic(insert_round, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info["events_per_second"] = events_per_second(
        benchmark, BATCHES_PER_ROUND * EVENTS_PER_BATCH
    )
    connection.close()


@pytest.fixture
def local_log(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[LocalBroker, asyncio.AbstractEventLoop]]:
    settings = BrokerSettings(
        data_dir=tmp_path,
        partitions=BATCHES_PER_ROUND,
        local_sync=request.param,
        retention_interval_seconds=0,
    )
    broker = LocalBroker(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(broker.connect())
    yield broker, loop
    loop.run_until_complete(broker.close())
    loop.close()


@pytest.mark.parametrize("local_log", ["normal", "full"], indirect=True)
def test_local_log_publish_one_partition(benchmark, local_log, batches: list[bytes]) -> None:
    broker, loop = local_log

    def publish_round() -> None:
        loop.run_until_complete(broker.publish("events", 0, batches))

    benchmark.pedantic(publish_round, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info["events_per_second"] = events_per_second(
        benchmark, BATCHES_PER_ROUND * EVENTS_PER_BATCH
    )


@pytest.mark.parametrize("local_log", ["normal", "full"], indirect=True)
def test_local_log_publish_all_partitions(benchmark, local_log, batches: list[bytes]) -> None:
    broker, loop = local_log

    async def publish_everywhere() -> None:
        await asyncio.gather(
            *(broker.publish("events", p, [blob]) for p, blob in enumerate(batches))
        )

    def publish_round() -> None:
        loop.run_until_complete(publish_everywhere())

    benchmark.pedantic(publish_round, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info["events_per_second"] = events_per_second(
        benchmark, BATCHES_PER_ROUND * EVENTS_PER_BATCH
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    """Return p50 and p99 of samples in seconds, as milliseconds."""
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "samples": len(samples)}


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_sqlite_commit_latency_baseline(benchmark, tmp_path: Path, sync: str) -> None:
    connection = sqlite3.connect(tmp_path / "latency.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {sync.upper()}")
    connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, payload BLOB)")
    event = realistic_event(0)
    samples: list[float] = []

    def insert_one() -> None:
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO blobs (payload) VALUES (?)", (event,))
        connection.execute("COMMIT")
        samples.append(time.perf_counter() - started)

    benchmark.pedantic(insert_one, rounds=500, iterations=1)
    benchmark.extra_info.update(percentiles(samples))
    connection.close()


@pytest.fixture
def producer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Producer]:
    settings = BrokerSettings(
        data_dir=tmp_path,
        partitions=24,
        local_sync=request.param,
        retention_interval_seconds=0,
        linger_ms=1.0,
    )
    started = Producer(LocalBroker(settings), settings)
    started.start()
    yield started
    started.close()


@pytest.mark.parametrize("producer", ["normal", "full"], indirect=True)
def test_producer_latency_one_in_flight(benchmark, producer: Producer) -> None:
    event = realistic_event(1)
    samples: list[float] = []

    def submit_and_wait() -> None:
        started = time.perf_counter()
        producer.submit_event(3, event).result(timeout=30)
        samples.append(time.perf_counter() - started)

    benchmark.pedantic(submit_and_wait, rounds=500, iterations=1)
    benchmark.extra_info.update(percentiles(samples))


@pytest.mark.parametrize("producer", ["normal", "full"], indirect=True)
def test_producer_latency_burst(benchmark, producer: Producer) -> None:
    events = [realistic_event(i) for i in range(20_000)]
    samples: list[float] = []
    lock = threading.Lock()

    def burst() -> None:
        futures = []
        for index, event in enumerate(events):
            started = time.perf_counter()
            future = producer.submit_event(index % 24, event)

            def record(_: object, started: float = started) -> None:
                elapsed = time.perf_counter() - started
                with lock:
                    samples.append(elapsed)

            future.add_done_callback(record)
            futures.append(future)
        for future in futures:
            future.result(timeout=60)

    benchmark.pedantic(burst, rounds=3, iterations=1)
    benchmark.extra_info.update(percentiles(samples))
    benchmark.extra_info["events_per_second"] = events_per_second(benchmark, len(events))
