"""Throughput of the Delta archiver beside a plain Parquet write of the same rows.

Figures from one run on the same 200,000 realistic events (20 tenants, one UTC
day, four params each), each as events per wall second and per CPU second of
the process (all threads), with its ratio to the baseline:

- baseline: `events_to_table` of decoded dicts (Python) and
  `pyarrow.parquet.write_table` of the result to one local file, the path the
  archiver took before its rows came from the extension;
- sink core, documents: what `ArchiverSink` does per flush, from the stored JSON
  documents to a Delta commit: `documents_to_table` (the extension), the
  duplicate check, and a partitioned append with transaction actions, in commits
  of ARCHIVE_COMMIT_EVENTS (100,000) events;
- sink core, dicts: the same with `events_to_table` of decoded dicts, the sink
  core as it was before;
- end to end: the real runtime draining the same events from the local broker
  into `ArchiverSink`, which reads the documents undecoded (`decode_events = False`).

Run: `pytest bench/test_archiver.py -s -p no:cacheprovider`. The report goes to
bench/results/archiver.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from deltalake import DeltaTable

from tracker._core import encode_record_batch, partition_for, uuid7
from tracker.broker import open_broker
from tracker.broker.base import TOPIC_EVENTS_CLEAN
from tracker.broker.settings import BrokerSettings
from tracker.consumers.archive_dedup import RecentEventIds
from tracker.consumers.archive_table import (
    ArchiveTable,
    ConvertedEvents,
    documents_to_table,
    events_to_table,
)
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


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    cpu_seconds: float

    @property
    def wall_rate(self) -> float:
        return EVENTS / self.wall_seconds

    @property
    def cpu_rate(self) -> float:
        return EVENTS / self.cpu_seconds


def timed(run: Callable[[], object]) -> Timing:
    """Run `run` once and return its wall time and the process CPU time it used."""
    cpu = time.process_time()
    wall = time.perf_counter()
    run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def report(lines: list[str]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Archiver throughput\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def append_in_commits(table: ArchiveTable, rows_of: Callable[[int, int], ConvertedEvents]) -> None:
    """Convert, deduplicate and append the events in commits of COMMIT_EVENTS."""
    recent = RecentEventIds(3600, 2_000_000)
    for first in range(0, EVENTS, COMMIT_EVENTS):
        converted = rows_of(first, first + COMMIT_EVENTS).table
        pending: set[str] = set()
        recent.take_new(converted.column("event_id").to_pylist(), pending)
        table.append(converted, "archiver", {0: first // COMMIT_EVENTS})
        recent.add(pending)


def sink_core(path: Path, rows_of: Callable[[int, int], ConvertedEvents]) -> Timing:
    table = ArchiveTable(str(path))
    table.open()
    timing = timed(lambda: append_in_commits(table, rows_of))
    assert DeltaTable(table.uri).to_pyarrow_table(columns=["event_id"]).num_rows == EVENTS
    return timing


def row(name: str, timing: Timing, baseline: Timing) -> str:
    return (
        f"| {name} | {timing.wall_rate:,.0f} | {timing.wall_rate / baseline.wall_rate:.2f}"
        f" | {timing.cpu_rate:,.0f} | {timing.cpu_rate / baseline.cpu_rate:.2f} |"
    )


def test_archiver_throughput(tmp_path: Path) -> None:
    load_before = os.getloadavg()[0]
    events = make_events(EVENTS)
    documents = [orjson.dumps(event) for event in events]

    baseline = timed(
        lambda: pq.write_table(events_to_table(events).table, tmp_path / "baseline.parquet")
    )
    from_documents = sink_core(
        tmp_path / "documents" / "events",
        lambda first, end: documents_to_table(documents[first:end]),
    )
    from_dicts = sink_core(
        tmp_path / "dicts" / "events", lambda first, end: events_to_table(events[first:end])
    )
    end_to_end = asyncio.run(_drain_through_runtime(tmp_path / "e2e", documents))

    report(
        [
            f"{EVENTS:,} events, 20 tenants, one UTC day; 2 CPU cores shared with other"
            f" engineers' jobs, 1-minute load average {load_before:.1f} before and"
            f" {os.getloadavg()[0]:.1f} after the run. CPU seconds count this process's own"
            " work (all threads) and depend far less on that load than wall seconds.",
            "",
            "| path | events/s (wall) | ratio | events per CPU s | ratio |",
            "|---|---|---|---|---|",
            row("baseline: events_to_table (dicts) + pyarrow write_table", baseline, baseline),
            row(
                "sink core, documents: documents_to_table + dedup + Delta append",
                from_documents,
                baseline,
            ),
            row(
                "sink core, dicts (before): events_to_table + dedup + Delta append",
                from_dicts,
                baseline,
            ),
            row("end to end: local broker + runtime + ArchiverSink", end_to_end, baseline),
            "",
            "Command: `pytest bench/test_archiver.py -s -p no:cacheprovider`",
        ]
    )


async def _drain_through_runtime(data_dir: Path, documents: list[bytes]) -> Timing:
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
    for document in documents:
        key_prefix = orjson.loads(document)["params"]["key_prefix"]
        by_partition.setdefault(partition_for(key_prefix, PARTITIONS), []).append(document)
    ends: dict[int, int] = {}
    for partition, lines in by_partition.items():
        payloads = [encode_record_batch(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
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
    cpu = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(runtime.run())
    while True:
        committed = {p: await broker.committed(TOPIC_EVENTS_CLEAN, "archiver", p) for p in ends}
        if committed == ends:
            break
        await asyncio.sleep(0.01)
    runtime.request_stop()
    await task
    timing = Timing(time.perf_counter() - started, time.process_time() - cpu)
    await broker.close()
    assert DeltaTable(str(data_dir / "delta" / "events")).to_pyarrow_table(
        columns=["event_id"]
    ).num_rows == len(documents)
    return timing
