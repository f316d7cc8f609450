"""Stats consumer: exact counts through redelivery, crashes and bad events."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.consumers.conftest import (
    REPO,
    broker_env,
    consumer_settings,
    make_event,
    open_local_broker,
    publish,
    read_topic,
    start_consumer,
)
from tests.consumers.test_runtime import run_until
from tracker._core import uuid7
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS_CLEAN, Broker
from tracker.consumers.columns import read_columns
from tracker.consumers.events import hour_of
from tracker.consumers.runtime import Batch, ConsumerRuntime
from tracker.consumers.stats import FIELDS, StatsSettings, StatsSink, ledger_input
from tracker.errors import RegistryError
from tracker.registry.db import Registry
from tracker.registry.ledger import (
    LedgerRow,
    committed_offsets,
    count_events,
    count_rows,
    prune_ledger,
    record_batch,
)

HOUR_MS = 3_600_000
BASE_MS = 1_770_703_200_000  # 2026-02-10 06:00:00 UTC, the start of an hour


def registry_of(data_dir: Path) -> Registry:
    return Registry(data_dir / "registry.db")


def total(registry: Registry, tenant: str) -> int:
    return count_events(registry.connection(), tenant, start_hour=0, end_hour=2**40)


async def run_stats(
    broker: Broker, data_dir: Path, expected_events: int, **env: str
) -> ConsumerRuntime:
    registry = registry_of(data_dir)
    sink = StatsSink(StatsSettings())
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir, **env))

    def counted() -> int:
        (value,) = (
            registry.connection()
            .execute("SELECT coalesce(sum(count), 0) FROM stats_counts")
            .fetchone()
        )
        return value

    await run_until(runtime, lambda: counted() >= expected_events)
    registry.close()
    return runtime


async def test_stats_counts_per_type_tu_and_hour(broker: Broker, data_dir: Path) -> None:
    events = [
        make_event("acme", "click", timestamp=BASE_MS + 1, tu_id="tu_a"),
        make_event("acme", "click", timestamp=BASE_MS + 2, tu_id="tu_a"),
        make_event("acme", "click", timestamp=BASE_MS + HOUR_MS, tu_id="tu_b"),
        make_event("acme", "postback", timestamp=BASE_MS + 5),
        make_event("globex", "click", timestamp=BASE_MS + 7, tu_id="tu_a"),
    ]
    await publish(broker, TOPIC_EVENTS_CLEAN, events)

    await run_stats(broker, data_dir, 5)

    connection = registry_of(data_dir).connection()
    hour = hour_of(BASE_MS)
    assert count_events(connection, "acme", start_hour=hour, end_hour=hour + 3600) == 4
    assert count_events(connection, "acme", start_hour=hour, end_hour=hour) == 3
    assert (
        count_events(connection, "acme", start_hour=hour, end_hour=hour + 3600, tu_id="tu_a") == 2
    )
    assert (
        count_events(connection, "acme", start_hour=hour, end_hour=hour, event_type="postback") == 1
    )
    assert count_events(connection, "globex", start_hour=hour, end_hour=hour) == 1
    rows = count_rows(
        connection, "acme", start_hour=hour, end_hour=hour + 3600, group_by=("event_type", "tu_id")
    )
    assert [(row.group, row.count) for row in rows] == [
        ({"event_type": "click", "tu_id": "tu_a"}, 2),
        ({"event_type": "click", "tu_id": "tu_b"}, 1),
        ({"event_type": "postback", "tu_id": ""}, 1),
    ]
    by_hour = count_rows(connection, "acme", start_hour=hour, end_hour=hour + 3600)
    assert [(row.group["hour"], row.count) for row in by_hour] == [(hour, 3), (hour + 3600, 1)]


async def test_stats_redelivery_counts_once(broker: Broker, data_dir: Path) -> None:
    events = [make_event("acme", timestamp=BASE_MS + i) for i in range(200)]
    await publish(broker, TOPIC_EVENTS_CLEAN, events)
    await publish(broker, TOPIC_EVENTS_CLEAN, events[:150])
    duplicated_in_one_message = [events[0], events[0], make_event("acme", timestamp=BASE_MS)]
    await publish(broker, TOPIC_EVENTS_CLEAN, duplicated_in_one_message)

    await run_stats(broker, data_dir, 201)
    await asyncio.sleep(0.2)

    assert total(registry_of(data_dir), "acme") == 201
    (ledger,) = (
        registry_of(data_dir).connection().execute("SELECT count(*) FROM stats_ledger").fetchone()
    )
    assert ledger == 201


async def test_stats_same_batch_twice_counts_once(broker: Broker, data_dir: Path) -> None:
    """A batch processed again after a crash before the broker commit changes nothing."""
    events = [make_event("acme", timestamp=BASE_MS + i) for i in range(100)]
    raw = [orjson.dumps(event) for event in events]
    settings = consumer_settings(data_dir)
    runtime = ConsumerRuntime(StatsSink(StatsSettings()), broker, settings)
    sink = runtime.sink
    await sink.open(runtime.context)
    try:
        for _attempt in range(3):
            await sink.process(Batch(1, 5, 7, list(events), raw))
        offsets = await sink.stored_offsets()
    finally:
        await sink.close()

    assert total(registry_of(data_dir), "acme") == 100
    assert offsets == {1: 7}


def test_ledger_counts_only_new_ids_of_mixed_batch(data_dir: Path) -> None:
    registry = registry_of(data_dir)
    connection = registry.connection()
    hour = hour_of(BASE_MS)
    known = [LedgerRow(uuid7(), "acme", "click", "tu_1", hour) for _ in range(3)]
    fresh = [LedgerRow(uuid7(), "acme", "click", "tu_1", hour) for _ in range(2)]
    options: dict[str, Any] = {"consumer": "stats", "topic": TOPIC_EVENTS_CLEAN, "partition": 0}

    first = record_batch(connection, known, last_offset=1, **options)
    second = record_batch(connection, [*known, *fresh, fresh[0]], last_offset=2, **options)

    assert (first, second) == (3, 2)
    assert total(registry, "acme") == 5
    assert committed_offsets(connection, "stats", TOPIC_EVENTS_CLEAN) == {0: 2}


def test_ledger_input_groups_last_occurrence() -> None:
    first = make_event("acme", "click", timestamp=BASE_MS, tu_id="tu_1")
    repeated = {**first, "event_type": "postback"}
    other = make_event("beta", "click", timestamp=BASE_MS + HOUR_MS)
    documents = [orjson.dumps(event) for event in (first, other, repeated)] + [b"[]"]

    event_ids, group_of, groups = ledger_input(read_columns(documents, FIELDS))

    hour = hour_of(BASE_MS)
    assert event_ids == [other["event_id"], first["event_id"]]
    assert [groups[group] for group in group_of.tolist()] == [
        ("beta", "click", "", hour + 3600),
        ("acme", "postback", "tu_1", hour),
    ]


BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing event_id", {"event_id": None}, "event_id"),
    ("uppercase id", {"event_id": "019C4633-5078-7411-8858-4AEAFB6298BB"}, "event_id"),
    ("missing type", {"event_type": None}, "event_type"),
    ("bad type", {"event_type": "click; drop"}, "event_type"),
    ("string timestamp", {"timestamp": "1770704294008"}, "timestamp"),
    ("bool timestamp", {"timestamp": True}, "timestamp"),
    ("seconds timestamp", {"timestamp": 1_770_704_294}, "timestamp"),
    ("params list", {"params": ["acme"]}, "params"),
    ("no tenant", {"params": {"sub1": "x"}}, "params.key_prefix"),
    ("numeric param", {"params": {"key_prefix": "acme", "tu_id": 42}}, "params.tu_id"),
    ("nested param", {"params": {"key_prefix": "acme", "sub1": {"a": 1}}}, "params.sub1"),
    ("huge param", {"params": {"key_prefix": "acme", "sub1": "x" * 100_000}}, "params.sub1"),
    ("huge agent", {"user_agent": "A" * 100_000}, "user_agent"),
    ("numeric ip", {"ip": 12345}, "ip"),
    (
        "too many params",
        {"params": {"key_prefix": "acme", **{f"k{i}": "v" for i in range(100)}}},
        "params",
    ),
]


async def test_stats_dead_letters_bad_events(broker: Broker, data_dir: Path) -> None:
    bad = []
    for _case, change, _field in BAD_EVENTS:
        event = make_event("acme", timestamp=BASE_MS)
        event.update(change)
        if event["event_id"] is None:
            del event["event_id"]
        if event["event_type"] is None:
            del event["event_type"]
        bad.append(event)
    good = [make_event("acme", timestamp=BASE_MS) for _ in range(3)]
    from tests.consumers.conftest import encode, partition_of

    await broker.publish(
        TOPIC_EVENTS_CLEAN, partition_of("acme"), [encode(good[:1] + bad + good[1:])]
    )

    await run_stats(broker, data_dir, 3)
    await asyncio.sleep(0.2)

    assert total(registry_of(data_dir), "acme") == 3
    letters = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert len(letters) == len(BAD_EVENTS)
    for letter, (case, _change, field) in zip(letters, BAD_EVENTS, strict=True):
        assert letter["reason"].startswith(field + ":"), case
        assert len(letter["reason"]) < 200, case


def test_ledger_query_rejects_bad_arguments(data_dir: Path) -> None:
    connection = registry_of(data_dir).connection()
    with pytest.raises(RegistryError, match="unknown column 'ip'"):
        count_rows(connection, "acme", start_hour=0, end_hour=1, group_by=("ip",))
    with pytest.raises(RegistryError, match="before start_hour"):
        count_events(connection, "acme", start_hour=10, end_hour=1)
    with pytest.raises(RegistryError, match="at least one"):
        count_rows(connection, "acme", start_hour=0, end_hour=1, group_by=())


async def test_ledger_prune_keeps_counters(broker: Broker, data_dir: Path) -> None:
    await publish(
        broker, TOPIC_EVENTS_CLEAN, [make_event("acme", timestamp=BASE_MS) for _ in range(8)]
    )
    await run_stats(broker, data_dir, 8)
    connection = registry_of(data_dir).connection()
    old_ids = [row[0] for row in connection.execute("SELECT event_id FROM stats_ledger LIMIT 5")]
    connection.executemany(
        "UPDATE stats_ledger SET recorded_at = 1000 WHERE event_id = ?", [(i,) for i in old_ids]
    )

    deleted = prune_ledger(connection, 2000, batch_rows=2)

    assert deleted == 5
    (left,) = connection.execute("SELECT count(*) FROM stats_ledger").fetchone()
    assert left == 3
    assert total(registry_of(data_dir), "acme") == 8


def test_stats_settings_reject_unknown_topic() -> None:
    from tracker.errors import ConfigError
    from tracker.settings import Env

    with pytest.raises(ConfigError, match="STATS_SOURCE_TOPIC"):
        StatsSettings.from_env(Env({"STATS_SOURCE_TOPIC": "dead-letters"}))
    assert StatsSettings.from_env(Env({})).source_topic == TOPIC_EVENTS_CLEAN


def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} seconds")
        time.sleep(0.05)


def sqlite_total(data_dir: Path) -> int:
    registry = registry_of(data_dir)
    try:
        (value,) = (
            registry.connection()
            .execute("SELECT coalesce(sum(count), 0) FROM stats_counts")
            .fetchone()
        )
    finally:
        registry.close()
    return int(value)


async def test_consume_sigterm_finishes_and_exits_zero(broker: Broker, data_dir: Path) -> None:
    await publish(
        broker, TOPIC_EVENTS_CLEAN, [make_event("acme", timestamp=BASE_MS + i) for i in range(500)]
    )
    process = start_consumer("stats", data_dir)
    try:
        await asyncio.to_thread(wait_for, lambda: sqlite_total(data_dir) == 500, 90)
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"Consumer stopped." in stderr
    for partition in range(broker.partitions):
        assert await broker.committed(
            TOPIC_EVENTS_CLEAN, "stats", partition
        ) == await broker.end_offset(TOPIC_EVENTS_CLEAN, partition)


async def test_consume_status_prints_lag(broker: Broker, data_dir: Path) -> None:
    await publish(
        broker, TOPIC_EVENTS_CLEAN, [make_event("acme") for _ in range(30)], per_message=10
    )
    env = {**os.environ, **broker_env(data_dir)}
    command = [
        sys.executable,
        "-c",
        "from tracker.cli.main import main; main()",
        "consume",
        "stats",
        "--status",
    ]

    table = subprocess.run(command, env=env, cwd=REPO, capture_output=True, timeout=60)
    document = subprocess.run(
        [*command, "--json"], env=env, cwd=REPO, capture_output=True, timeout=60
    )

    assert table.returncode == 0, table.stderr.decode()[-2000:]
    assert document.returncode == 0, document.stderr.decode()[-2000:]
    status = orjson.loads(document.stdout)
    assert status["consumer"] == "stats"
    assert status["topic"] == TOPIC_EVENTS_CLEAN
    assert status["lag"] == 3
    assert [row["partition"] for row in status["partitions"]] == list(range(broker.partitions))
    assert "total" in table.stdout.decode()
    assert table.stdout.decode().split()[-1] == "3"


def test_consume_unknown_name_fails_clearly(data_dir: Path) -> None:
    env = {**os.environ, **broker_env(data_dir)}
    command = [
        sys.executable,
        "-c",
        "from tracker.cli.main import main; main()",
        "consume",
        "nope",
        "--status",
    ]

    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, timeout=60)

    assert result.returncode == 1
    assert b"unknown consumer 'nope'" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.slow
async def test_stats_exact_after_repeated_kill9(data_dir: Path) -> None:
    """Kill the consumer with SIGKILL mid-run several times while events arrive; counts stay exact."""
    producer = await open_local_broker(data_dir)
    tenants = ["acme", "globex", "initech", "umbrella", "hooli"]
    sent: set[str] = set()
    rng = random.Random(7)

    async def produce(rounds: int) -> None:
        for _ in range(rounds):
            events = [
                make_event(rng.choice(tenants), timestamp=BASE_MS + rng.randrange(10 * HOUR_MS))
                for _ in range(600)
            ]
            # Every tenth event is sent twice, as a producer retry would.
            events += events[::10]
            sent.update(event["event_id"] for event in events)
            await publish(producer, TOPIC_EVENTS_CLEAN, events, per_message=100)
            await asyncio.sleep(0.05)

    try:
        for _kill in range(4):
            process = start_consumer("stats", data_dir)
            await produce(5)
            await asyncio.sleep(0.3 + rng.random() * 0.5)
            process.kill()
            process.wait(timeout=10)

        await produce(3)
        process = start_consumer("stats", data_dir)
        try:
            await asyncio.to_thread(wait_for, lambda: sqlite_total(data_dir) >= len(sent), 180)
            await asyncio.sleep(0.5)
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
    finally:
        await producer.close()

    assert sqlite_total(data_dir) == len(sent)
    registry = registry_of(data_dir)
    (ledger,) = registry.connection().execute("SELECT count(*) FROM stats_ledger").fetchone()
    assert ledger == len(sent)
