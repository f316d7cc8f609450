"""Throughput of the Delta archiver beside a plain Parquet write of the same rows.

Three figures from one run on the same 200,000 realistic events (20 tenants, one
UTC day, four params each):

- baseline: `pyarrow.parquet.write_table` of the already converted Arrow table to
  one local file, the least work any archive of these rows does;
- sink core: what `ArchiverSink` does per flush, from decoded events to a Delta
  commit: conversion to Arrow, the duplicate check, and a partitioned append with
  transaction actions, in commits of ARCHIVE_COMMIT_EVENTS (100,000) events;
- end to end: the real runtime draining the same events from the local broker,
  which adds record batch decoding and `orjson.loads` per event.

Run: `pytest bench/test_archiver.py -s -p no:cacheprovider`. The report goes to
bench/results/archiver.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from deltalake import DeltaTable

from tracker._core import encode_record_batch, partition_for, uuid7
from tracker.broker import open_broker
from tracker.broker.base import TOPIC_EVENTS_CLEAN
from tracker.broker.settings import BrokerSettings
from tracker.consumers.archive_dedup import RecentEventIds
from tracker.consumers.archive_table import ArchiveTable, events_to_table
from tracker.consumers.archiver import ArchiverSink, ArchiveSettings
from tracker.consumers.runtime import ConsumerRuntime
from tracker.consumers.settings import ConsumerSettings
from tracker.settings import Env

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "archiver.md"
EVENTS = int(os.environ.get("ARCHIVER_BENCH_EVENTS", "200000"))
COMMIT_EVENTS = 100_000
PARTITIONS = 4
TENANTS = [f"tenant{number}" for number in range(20)]
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def make_events(count: int) -> list[dict]:
    rng = random.Random(7)
    start = 1_770_681_600_000  # 2026-02-10T00:00:00Z
    return [
        {
            "event_id": uuid7(),
            "event_type": rng.choice(["click", "postback", "impression", "pageview"]),
            "timestamp": start + rng.randrange(86_400_000),
            "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent": USER_AGENT,
            "referer": "https://news.example.com/article/123",
            "accept_language": "en-US,en;q=0.9",
            "request_path": "/t",
            "request_host": "track.example.com",
            "params": {
                "key_prefix": rng.choice(TENANTS),
                "sub1": rng.choice(["google", "bing", "meta", "tiktok"]),
                "campaign_id": f"camp_{rng.randrange(500)}",
                "tu_id": f"tu_{rng.randrange(10_000)}",
            },
        }
        for _ in range(count)
    ]


def report(lines: list[str]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Archiver throughput\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def test_archiver_throughput(tmp_path: Path) -> None:
    events = make_events(EVENTS)

    started = time.perf_counter()
    rows = events_to_table(events).table
    pq.write_table(rows, tmp_path / "baseline.parquet")
    baseline_seconds = time.perf_counter() - started

    table = ArchiveTable(str(tmp_path / "delta" / "events"))
    table.open()
    recent = RecentEventIds(3600, 2_000_000)
    started = time.perf_counter()
    for first in range(0, len(events), COMMIT_EVENTS):
        chunk = events[first : first + COMMIT_EVENTS]
        converted = events_to_table(chunk).table
        pending: set[str] = set()
        recent.take_new(converted.column("event_id").to_pylist(), pending)
        table.append(converted, "archiver", {0: first // COMMIT_EVENTS})
        recent.add(pending)
    sink_seconds = time.perf_counter() - started
    assert DeltaTable(table.uri).to_pyarrow_table(columns=["event_id"]).num_rows == EVENTS

    end_to_end_seconds = asyncio.run(_drain_through_runtime(tmp_path / "e2e", events))

    baseline_rate = EVENTS / baseline_seconds
    sink_rate = EVENTS / sink_seconds
    end_to_end_rate = EVENTS / end_to_end_seconds
    report(
        [
            f"{EVENTS:,} events, 20 tenants, one UTC day; 2 shared CPU cores (other engineers' jobs ran too),"
            f" 1-minute load average {os.getloadavg()[0]:.1f} at the end.",
            "",
            "| path | events/s | ratio to baseline |",
            "|---|---|---|",
            f"| baseline: convert + pyarrow write_table, one file | {baseline_rate:,.0f} | 1.00 |",
            f"| sink core: convert + dedup + Delta append, 100k per commit | {sink_rate:,.0f} | {sink_rate / baseline_rate:.2f} |",
            f"| end to end: local broker + runtime + ArchiverSink | {end_to_end_rate:,.0f} | {end_to_end_rate / baseline_rate:.2f} |",
            "",
            "Command: `pytest bench/test_archiver.py -s -p no:cacheprovider`",
        ]
    )


async def _drain_through_runtime(data_dir: Path, events: list[dict]) -> float:
    values = {
        "BROKER": "local",
        "TRACKER_DATA_DIR": str(data_dir),
        "BROKER_PARTITIONS": str(PARTITIONS),
        "LOCAL_LOG_SYNC": "normal",
        "CONSUMER_POLL_MESSAGES": "64",
        "CONSUMER_IDLE_SLEEP_MS": "5",
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
        "CONSUMER_MEMBER": "bench",
    }
    broker = open_broker(BrokerSettings.from_env(Env(values)))
    await broker.connect()
    by_partition: dict[int, list[bytes]] = {}
    for event in events:
        by_partition.setdefault(
            partition_for(event["params"]["key_prefix"], PARTITIONS), []
        ).append(orjson.dumps(event))
    ends: dict[int, int] = {}
    for partition, documents in by_partition.items():
        payloads = [
            encode_record_batch(documents[i : i + 1000]) for i in range(0, len(documents), 1000)
        ]
        await broker.publish(TOPIC_EVENTS_CLEAN, partition, payloads)
        ends[partition] = await broker.end_offset(TOPIC_EVENTS_CLEAN, partition)

    settings = ArchiveSettings(
        root_uri=str(data_dir / "delta"),
        commit_seconds=60.0,
        commit_events=COMMIT_EVENTS,
        compact_every_seconds=0.0,
    )
    sink = ArchiverSink("archiver", TOPIC_EVENTS_CLEAN, "events", settings)
    runtime = ConsumerRuntime(sink, broker, ConsumerSettings.from_env(Env(values)))
    started = time.perf_counter()
    task = asyncio.create_task(runtime.run())
    while True:
        committed = {p: await broker.committed(TOPIC_EVENTS_CLEAN, "archiver", p) for p in ends}
        if committed == ends:
            break
        await asyncio.sleep(0.01)
    runtime.request_stop()
    await task
    seconds = time.perf_counter() - started
    await broker.close()
    assert DeltaTable(str(data_dir / "delta" / "events")).to_pyarrow_table(
        columns=["event_id"]
    ).num_rows == len(events)
    return seconds
