"""Throughput of the event filter, stats and hot writer consumers from a pre-filled local log.

Each consumer drains a backlog of realistic events (20 tenants, 5,000 client IPs,
about 2% bot user agents) from the real local broker through the real runtime. The
baseline, measured in the same run on the same record batches, is the raw work every
consumer must do anyway: `decode_record_batch` plus `orjson.loads` of each event.
A second test drains a backlog of several million events through `tracker consume
stats` and samples the process's peak RSS, to show that memory stays bounded by the
poll size rather than by the backlog.

Run: `pytest bench/test_consumers.py -s -p no:cacheprovider` (HOT_BENCH_DSN or the
test PostgreSQL for the hot writer). The report goes to bench/results/consumers.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
import pytest

from tracker._core import decode_record_batch, encode_record_batch, partition_for, uuid7
from tracker.broker import open_broker
from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, Broker
from tracker.broker.settings import BrokerSettings
from tracker.consumers.event_filter.sink import EventFilterSink, FilterSettings
from tracker.consumers.hot_writer import HotWriter, HotWriterSettings
from tracker.consumers.runtime import Batch, ConsumerRuntime, Sink
from tracker.consumers.settings import ConsumerSettings
from tracker.consumers.stats import StatsSettings, StatsSink
from tracker.settings import Env

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "consumers.md"
PARTITIONS = 4
EVENTS = int(os.environ.get("CONSUMER_BENCH_EVENTS", "200000"))
BACKLOG_EVENTS = int(os.environ.get("CONSUMER_BENCH_BACKLOG", "2000000"))
EVENTS_PER_MESSAGE = 1000
GENERATION_CHUNK = 100_000
TENANTS = [f"tenant{number}" for number in range(20)]
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/18.3.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.135 Mobile Safari/537.36",
]
BOTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "curl/8.5.0"]
RESULT_LINES: list[str] = []


def realistic_events(count: int, seed: int = 1, *, first: int = 0, total: int = 0) -> list[bytes]:
    """Return `count` encoded events; `first` and `total` place them in a larger data set.

    Timestamps step back 1 ms per 10 events from now, counted from the end of the data set.
    """
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    total = max(total, first + count)
    documents = []
    for index in range(first, first + count):
        agent = rng.choice(BOTS) if rng.random() < 0.02 else rng.choice(BROWSERS)
        documents.append(
            orjson.dumps(
                {
                    "event_id": uuid7(),
                    "event_type": rng.choice(("click", "click", "click", "postback", "impression")),
                    "timestamp": now - (total - index) // 10,
                    "ip": f"198.51.{rng.randrange(20)}.{rng.randrange(250)}",
                    "user_agent": agent,
                    "referer": "https://news.example.com/article/123",
                    "accept_language": "en-US,en;q=0.9",
                    "request_path": "/t",
                    "request_host": "track.example.com",
                    "params": {
                        "key_prefix": rng.choice(TENANTS),
                        "tu_id": f"tu_{rng.randrange(200)}",
                        "sub1": rng.choice(("google_search", "facebook", "newsletter")),
                        "campaign_id": f"camp_{rng.randrange(50)}",
                    },
                }
            )
        )
    return documents


def record_batches(documents: list[bytes]) -> dict[int, list[bytes]]:
    by_partition: dict[int, list[bytes]] = {}
    for document in documents:
        tenant = orjson.loads(document)["params"]["key_prefix"]
        by_partition.setdefault(partition_for(tenant, PARTITIONS), []).append(document)
    return {
        partition: [
            encode_record_batch(rows[i : i + EVENTS_PER_MESSAGE])
            for i in range(0, len(rows), EVENTS_PER_MESSAGE)
        ]
        for partition, rows in by_partition.items()
    }


def dataset_batches(count: int) -> dict[int, list[bytes]]:
    """Generate `count` events in chunks and keep only their encoded record batches.

    Generating a whole data set at once peaked at about 4 KB of RSS per event (12 GB for
    3,000,000), so only one chunk of `GENERATION_CHUNK` events exists at a time: 1,000,000
    events then peak at about 0.9 GB. A chunk's last record batch per partition may hold
    fewer than `EVENTS_PER_MESSAGE` events.
    """
    batches: dict[int, list[bytes]] = {}
    for first in range(0, count, GENERATION_CHUNK):
        size = min(GENERATION_CHUNK, count - first)
        events = realistic_events(
            size, seed=1 + first // GENERATION_CHUNK, first=first, total=count
        )
        for partition, payloads in record_batches(events).items():
            batches.setdefault(partition, []).extend(payloads)
    return batches


def env_for(data_dir: Path) -> dict[str, str]:
    return {
        "BROKER": "local",
        "TRACKER_DATA_DIR": str(data_dir),
        "BROKER_PARTITIONS": str(PARTITIONS),
        "LOCAL_LOG_SYNC": "normal",
        "LOCAL_LOG_RETENTION_INTERVAL_SECONDS": "0",
        "CONSUMER_MEMBER": f"bench-{uuid.uuid4().hex[:6]}",
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
    }


async def filled_broker(data_dir: Path, topic: str, batches: dict[int, list[bytes]]) -> Broker:
    broker = open_broker(BrokerSettings.from_env(Env(env_for(data_dir))))
    await broker.connect()
    for partition, payloads in batches.items():
        for start in range(0, len(payloads), 50):
            await broker.publish(topic, partition, payloads[start : start + 50])
    return broker


def baseline_rate(batches: dict[int, list[bytes]]) -> tuple[float, float]:
    """Return (events per wall second, events per CPU second) of decoding the batches."""
    started, cpu_started = time.perf_counter(), time.process_time()
    count = 0
    for payloads in batches.values():
        for payload in payloads:
            for document in decode_record_batch(payload):
                orjson.loads(document)
                count += 1
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu_started)


async def drain(sink: Sink, broker: Broker, data_dir: Path, topic: str) -> tuple[float, float]:
    """Run the sink until the group has committed every message.

    Returns events per wall second and per CPU second of this process (all its
    threads, so the broker's and registry's SQLite work counts too). PostgreSQL's
    own CPU is not in the second figure.
    """
    settings = ConsumerSettings.from_env(Env(env_for(data_dir)))
    runtime = ConsumerRuntime(sink, broker, settings)
    ends = {partition: await broker.end_offset(topic, partition) for partition in range(PARTITIONS)}
    started, cpu_started = time.perf_counter(), time.process_time()
    task = asyncio.create_task(runtime.run())
    while True:
        committed = {p: await broker.committed(topic, sink.name, p) for p in range(PARTITIONS)}
        if committed == ends:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    runtime.request_stop()
    await task
    return EVENTS / elapsed, EVENTS / cpu


def record(line: str) -> None:
    print(line)
    RESULT_LINES.append(line)


@pytest.fixture(scope="module")
def dataset() -> tuple[dict[int, list[bytes]], tuple[float, float]]:
    batches = dataset_batches(EVENTS)
    rates = [baseline_rate(batches) for _ in range(3)]
    return batches, (max(rate[0] for rate in rates), max(rate[1] for rate in rates))


def row(what: str, rate: tuple[float, float], baseline: tuple[float, float]) -> str:
    return f"| {what} | {rate[0]:,.0f} | {rate[0] / baseline[0]:.2f} | {rate[1]:,.0f} | {rate[1] / baseline[1]:.2f} |"


@pytest.fixture(scope="module", autouse=True)
def write_report() -> Any:
    yield
    header = [
        "# Consumer throughput",
        "",
        f"Command: `CONSUMER_BENCH_EVENTS={EVENTS} pytest bench/test_consumers.py -s"
        " -p no:cacheprovider`.",
        f"Data: {EVENTS:,} realistic events (about 450 bytes each) in record batches of"
        f" {EVENTS_PER_MESSAGE:,}, {PARTITIONS} partitions, local log on local disk.",
        f"Machine: {os.cpu_count()} CPUs shared with other work; figures vary with load."
        f" 1-minute load average at the end: {os.getloadavg()[0]:.1f}.",
        "Baseline: `decode_record_batch` plus `orjson.loads` of every event of the same batches, same run.",
        "",
        "Wall figures depend on the load other processes put on the machine; CPU figures count",
        "the CPU time of the benchmark process and all its threads.",
        "",
        "| what | events per wall second | vs baseline | events per CPU second | vs baseline |",
        "|---|---|---|---|---|",
    ]
    RESULTS.write_text("\n".join(header + RESULT_LINES) + "\n", encoding="utf-8")


async def test_event_filter_throughput(
    tmp_path: Path, dataset: tuple[dict[int, list[bytes]], tuple[float, float]]
) -> None:
    batches, baseline = dataset
    record(row("baseline: decode + orjson.loads", baseline, baseline))
    broker = await filled_broker(tmp_path, TOPIC_EVENTS, batches)
    try:
        rate = await drain(EventFilterSink(FilterSettings()), broker, tmp_path, TOPIC_EVENTS)
    finally:
        await broker.close()
    record(row("event-filter (events -> events-clean)", rate, baseline))


async def test_stats_throughput(
    tmp_path: Path, dataset: tuple[dict[int, list[bytes]], tuple[float, float]]
) -> None:
    batches, baseline = dataset
    broker = await filled_broker(tmp_path, TOPIC_EVENTS_CLEAN, batches)
    try:
        rate = await drain(StatsSink(StatsSettings()), broker, tmp_path, TOPIC_EVENTS_CLEAN)
    finally:
        await broker.close()
    record(row("stats (ledger in the SQLite registry)", rate, baseline))


def backend_cpu_seconds(pid: int) -> float | None:
    """Return the user plus system CPU seconds of a local process, or None if it is not local."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name start at field 3; utime and stime are 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MeteredHotWriter(HotWriter):
    """The hot writer, also summing its PostgreSQL backend's CPU and its time in `process`."""

    def __init__(self, settings: HotWriterSettings) -> None:
        super().__init__(settings)
        self.process_seconds = 0.0
        # Backend pid -> (CPU seconds at the first sample, at the latest sample).
        self.backend_cpu: dict[int, tuple[float, float]] = {}

    def _sample_backend(self) -> None:
        if self._connection is None:
            return
        pid = self._connection.get_server_pid()
        seconds = backend_cpu_seconds(pid)
        if seconds is not None:
            first = self.backend_cpu.get(pid, (seconds, seconds))[0]
            self.backend_cpu[pid] = (first, seconds)

    async def process(self, batch: Batch) -> None:
        self._sample_backend()
        started = time.perf_counter()
        await super().process(batch)
        self.process_seconds += time.perf_counter() - started
        self._sample_backend()

    @property
    def backend_seconds(self) -> float | None:
        if not self.backend_cpu:
            return None
        return sum(last - first for first, last in self.backend_cpu.values())


async def test_hot_writer_throughput(
    tmp_path: Path, dataset: tuple[dict[int, list[bytes]], tuple[float, float]]
) -> None:
    batches, baseline = dataset
    dsn = os.environ.get(
        "HOT_BENCH_DSN", os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(dsn)
    await connection.execute(f'CREATE SCHEMA "{schema}"')
    broker = await filled_broker(tmp_path, TOPIC_EVENTS_CLEAN, batches)
    sink = MeteredHotWriter(HotWriterSettings(dsn=dsn, schema=schema))
    try:
        rate = await drain(sink, broker, tmp_path, TOPIC_EVENTS_CLEAN)
        stored = await connection.fetchval(f'SELECT count(*) FROM "{schema}".events')
    finally:
        await broker.close()
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await connection.close()
    assert stored == EVENTS
    print(f"| baseline in this run | {baseline[0]:,.0f} | 1.00 | {baseline[1]:,.0f} | 1.00 |")
    record(row("hot-writer (binary COPY into PostgreSQL 15)", rate, baseline))
    backend = sink.backend_seconds
    backend_rate = f"{EVENTS / backend:,.0f}" if backend else "not local"
    record(
        f"| hot-writer: PostgreSQL backend CPU {backend or 0:.2f} s, {sink.process_seconds:.2f} s"
        f" wall in `process` | | | {backend_rate} per backend CPU second | |"
    )


@pytest.mark.timeout(1800)
async def test_backlog_peak_rss(tmp_path: Path) -> None:
    """Drain a multi-million event backlog with `tracker consume stats`; sample its RSS.

    The backlog repeats one 100,000-event set of record batches, so most events are
    redeliveries that the ledger skips. Memory depends on the poll size either way.
    """
    chunk = 100_000
    batches = record_batches(realistic_events(chunk))
    broker = open_broker(BrokerSettings.from_env(Env(env_for(tmp_path))))
    await broker.connect()
    try:
        for _copy in range(BACKLOG_EVENTS // chunk):
            for partition, payloads in batches.items():
                await broker.publish(TOPIC_EVENTS_CLEAN, partition, payloads)
        ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}

        env = {**os.environ, **env_for(tmp_path)}
        process = subprocess.Popen(
            [sys.executable, "-c", "from tracker.cli.main import main; main()", "consume", "stats"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        monitor = psutil.Process(process.pid)
        peak = 0
        started = time.perf_counter()
        try:
            while True:
                peak = max(peak, monitor.memory_info().rss)
                committed = {
                    p: await broker.committed(TOPIC_EVENTS_CLEAN, "stats", p)
                    for p in range(PARTITIONS)
                }
                if committed == ends:
                    break
                assert process.poll() is None, "consumer exited early"
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        await broker.close()
    record(
        f"| stats subprocess draining {BACKLOG_EVENTS:,} events: peak RSS {peak / 2**20:.0f} MiB"
        f" (CONSUMER_POLL_MESSAGES=16) | {BACKLOG_EVENTS / elapsed:,.0f} | | | |"
    )
