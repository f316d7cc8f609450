"""Hot tier writer against the real PostgreSQL: layout, idempotence, retention, bad rows, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.consumers.conftest import (
    consumer_settings,
    encode,
    make_event,
    partition_of,
    publish,
    read_topic,
)
from tests.consumers.test_runtime import run_until
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS_CLEAN, Broker
from tracker.consumers.hot_writer import HotWriter, HotWriterSettings
from tracker.consumers.runtime import Batch, ConsumerRuntime
from tracker.errors import ConfigError
from tracker.hot.schema import DAY_MS, Dialect, partition_name
from tracker.settings import Env

NOW_MS = int(time.time() * 1000)


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def count_rows(dsn: str, schema: str) -> int:
    rows = await fetch(
        dsn, f'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM "{schema}".events'
    )
    assert rows[0]["n"] == rows[0]["d"]
    return rows[0]["n"]


def writer(pg_dsn: str, pg_schema: str, **changes: Any) -> HotWriter:
    return HotWriter(HotWriterSettings(dsn=pg_dsn, schema=pg_schema, **changes))


async def run_writer(broker: Broker, data_dir: Path, sink: HotWriter, done: Any) -> ConsumerRuntime:
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await run_until(runtime, done, timeout=30)
    return runtime


async def wait_rows(pg_dsn: str, pg_schema: str, expected: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                if await count_rows(pg_dsn, pg_schema) >= expected:
                    return
            except asyncpg.UndefinedTableError:
                pass
            await asyncio.sleep(0.05)


async def process_directly(
    sink: HotWriter, runtime_context: Any, events: list[dict[str, Any]]
) -> Batch:
    batch = Batch(0, 0, 0, events, [orjson.dumps(event) for event in events])
    await sink.process(batch)
    return batch


async def test_hot_writer_creates_documented_layout(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    events = [
        make_event("acme", timestamp=NOW_MS - i * 1000, tu_id="tu_1", sub1="x") for i in range(50)
    ]
    await publish(broker, TOPIC_EVENTS_CLEAN, events)
    sink = writer(pg_dsn, pg_schema)

    state: dict[str, int] = {"rows": 0}

    async def poll() -> None:
        while state["rows"] < 50:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                state["rows"] = await count_rows(pg_dsn, pg_schema)
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    await run_writer(broker, data_dir, sink, lambda: state["rows"] >= 50)
    await poller

    columns = await fetch(
        pg_dsn,
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = 'events' ORDER BY ordinal_position",
        pg_schema,
    )
    assert [(row["column_name"], row["data_type"]) for row in columns] == [
        ("event_id", "uuid"),
        ("event_type", "text"),
        ("timestamp", "bigint"),
        ("key_prefix", "text"),
        ("ip", "text"),
        ("user_agent", "text"),
        ("referer", "text"),
        ("accept_language", "text"),
        ("request_path", "text"),
        ("request_host", "text"),
        ("params", "jsonb"),
    ]
    indexes = await fetch(
        pg_dsn,
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events'",
        pg_schema,
    )
    definitions = {row["indexname"]: row["indexdef"] for row in indexes}
    assert "USING gin (params jsonb_path_ops)" in definitions["events_params_gin"]
    assert '(key_prefix, "timestamp", event_type)' in definitions["events_tenant_time"]
    assert "events_event_id_key" in definitions
    partitions = await fetch(
        pg_dsn,
        "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = inhrelid"
        " JOIN pg_class parent ON parent.oid = inhparent JOIN pg_namespace n ON n.oid = parent.relnamespace"
        " WHERE parent.relname = 'events' AND n.nspname = $1",
        pg_schema,
    )
    names = {row["relname"] for row in partitions}
    today = NOW_MS - NOW_MS % DAY_MS
    assert {partition_name(today + day * DAY_MS) for day in range(4)} <= names

    stored = await fetch(
        pg_dsn, f'SELECT * FROM "{pg_schema}".events WHERE event_id = $1', events[0]["event_id"]
    )
    assert stored[0]["key_prefix"] == "acme"
    assert orjson.loads(stored[0]["params"]) == events[0]["params"]
    assert stored[0]["timestamp"] == events[0]["timestamp"]
    assert stored[0]["user_agent"] == events[0]["user_agent"]


async def test_hot_writer_ignores_duplicates(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    events = [make_event("acme", timestamp=NOW_MS - i) for i in range(300)]
    sink = writer(pg_dsn, pg_schema)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await sink.open(runtime.context)
    try:
        await process_directly(sink, None, events[:200])
        await process_directly(sink, None, events[100:])
        await process_directly(sink, None, events + events[:10])
    finally:
        await sink.close()

    assert await count_rows(pg_dsn, pg_schema) == 300


async def test_hot_writer_params_queryable_by_gin(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    events = [make_event("acme", timestamp=NOW_MS, campaign=f"c{i % 5}") for i in range(100)]
    sink = writer(pg_dsn, pg_schema)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await sink.open(runtime.context)
    try:
        await process_directly(sink, None, events)
    finally:
        await sink.close()

    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(
                f'EXPLAIN SELECT count(*) FROM "{pg_schema}".events WHERE params @> $1::jsonb',
                '{"campaign": "c1"}',
            )
        )
        count = await connection.fetchval(
            f'SELECT count(*) FROM "{pg_schema}".events WHERE params @> $1::jsonb',
            '{"campaign": "c1"}',
        )
        has_key = await connection.fetchval(
            f"SELECT count(*) FROM \"{pg_schema}\".events WHERE params ? 'campaign'"
        )
    finally:
        await connection.close()
    assert "events_params_gin" in plan or "params_idx" in plan
    assert count == 20
    assert has_key == 100


async def test_hot_writer_dead_letters_bad_events(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    good = make_event("acme", timestamp=NOW_MS, user_agent="agent\x00with nul", sub1="v\x00al")
    bad = [
        {**make_event("acme", timestamp=NOW_MS), "params": {"key_prefix": "acme", "n": 1}},
        {**make_event("acme", timestamp=NOW_MS), "user_agent": "x" * 10_000},
        {**make_event("acme", timestamp=NOW_MS), "event_id": "not-a-uuid"},
        {**make_event("acme"), "timestamp": NOW_MS + 400 * DAY_MS},
    ]
    expired = make_event("acme", timestamp=NOW_MS - 30 * DAY_MS)
    await broker.publish(
        TOPIC_EVENTS_CLEAN, partition_of("acme"), [encode([good, *bad, expired]), b"garbage"]
    )
    sink = writer(pg_dsn, pg_schema)

    async def letters() -> int:
        return len(await read_topic(broker, TOPIC_DEAD_LETTERS))

    state = {"letters": 0}

    async def poll() -> None:
        while state["letters"] < 5:
            state["letters"] = await letters()
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    await run_writer(broker, data_dir, sink, lambda: state["letters"] >= 5)
    await poller

    rows = await fetch(
        pg_dsn, f'SELECT event_id::text AS id, user_agent, params FROM "{pg_schema}".events'
    )
    assert [row["id"] for row in rows] == [good["event_id"]]
    assert rows[0]["user_agent"] == "agentwith nul"
    assert orjson.loads(rows[0]["params"])["sub1"] == "val"
    reasons = [letter["reason"] for letter in await read_topic(broker, TOPIC_DEAD_LETTERS)]
    assert reasons[0].startswith("undecodable record batch")
    assert [reason.split(":")[0] for reason in reasons[1:]] == [
        "params.n",
        "user_agent",
        "event_id",
        "timestamp",
    ]
    assert sink.skipped_expired == 1


async def test_hot_writer_rejected_row_goes_alone(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    sink = writer(pg_dsn, pg_schema)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await sink.open(runtime.context)
    connection = await asyncpg.connect(pg_dsn)
    await connection.execute(
        f"ALTER TABLE \"{pg_schema}\".events ADD CONSTRAINT no_refunds CHECK (event_type <> 'refund')"
    )
    await connection.close()
    events = [
        make_event("acme", "click", timestamp=NOW_MS),
        make_event("acme", "refund", timestamp=NOW_MS),
        make_event("acme", "postback", timestamp=NOW_MS),
    ]
    try:
        batch = await process_directly(sink, None, events)
    finally:
        await sink.close()

    assert await count_rows(pg_dsn, pg_schema) == 2
    assert [index for index, _reason in batch.dead_letters] == [1]
    assert "no_refunds" in batch.dead_letters[0][1]


async def test_hot_writer_drops_expired_partitions(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    old_day = NOW_MS - NOW_MS % DAY_MS - 10 * DAY_MS
    kept_day = NOW_MS - NOW_MS % DAY_MS - 2 * DAY_MS
    sink = writer(pg_dsn, pg_schema, retention_days=7)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await sink.open(runtime.context)
    try:
        connection = await asyncpg.connect(pg_dsn)
        dialect = Dialect("postgres", pg_schema)
        await connection.execute(dialect.create_partition(old_day))
        await connection.execute(
            f"INSERT INTO \"{pg_schema}\".events SELECT gen_random_uuid(), 'click', $1::bigint, 'acme', '', '', '', '', '', '', '{{}}'::jsonb",
            old_day + 5,
        )
        await connection.close()
        sink._last_maintenance = float("-inf")
        await process_directly(sink, None, [make_event("acme", timestamp=kept_day + 5)])
    finally:
        await sink.close()

    names = {
        row["relname"]
        for row in await fetch(
            pg_dsn,
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            pg_schema,
        )
    }
    assert partition_name(old_day) not in names
    assert partition_name(kept_day) in names
    assert await count_rows(pg_dsn, pg_schema) == 1


def test_hot_writer_settings_require_dsn() -> None:
    with pytest.raises(ConfigError, match="HOT_DSN"):
        HotWriterSettings.from_env(Env({}))
    with pytest.raises(ConfigError, match="HOT_DIALECT"):
        HotWriterSettings.from_env(Env({"HOT_DSN": "postgresql://x", "HOT_DIALECT": "mysql"}))
    with pytest.raises(ConfigError, match="HOT_SCHEMA"):
        HotWriterSettings.from_env(Env({"HOT_DSN": "postgresql://x", "HOT_SCHEMA": 'x"; DROP'}))
    settings = HotWriterSettings.from_env(Env({"HOT_DSN": "postgresql://x"}))
    assert (settings.schema, settings.retention_days, settings.source_topic) == (
        "public",
        7,
        TOPIC_EVENTS_CLEAN,
    )


async def test_hot_writer_retries_while_database_unreachable(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    from tests.conftest import free_port
    from tracker.errors import RetryableSinkError

    sink = writer(
        f"postgresql://postgres@127.0.0.1:{free_port()}/test", pg_schema, connect_timeout_seconds=1
    )
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    await sink.open(runtime.context)
    try:
        with pytest.raises(RetryableSinkError, match="hot database write failed"):
            await process_directly(sink, None, [make_event("acme", timestamp=NOW_MS)])
    finally:
        await sink.close()


@pytest.mark.slow
async def test_hot_writer_survives_postgres_restart(
    pg_dsn: str, pg_schema: str, broker: Broker, data_dir: Path
) -> None:
    """Restart the real PostgreSQL mid-run: every event lands exactly once."""
    sink = writer(pg_dsn, pg_schema)
    runtime = ConsumerRuntime(
        sink,
        broker,
        consumer_settings(data_dir, CONSUMER_POLL_MESSAGES="2", CONSUMER_RETRY_MAX_MS="1000"),
    )
    task = asyncio.create_task(runtime.run())
    sent: list[dict[str, Any]] = []
    try:
        for round_number in range(12):
            events = [
                make_event(tenant, timestamp=NOW_MS + round_number)
                for tenant in ("acme", "globex", "hooli")
                for _ in range(500)
            ]
            sent.extend(events)
            await publish(broker, TOPIC_EVENTS_CLEAN, events, per_message=250)
            if round_number == 4:
                restart = await asyncio.create_subprocess_exec(
                    "pg_ctlcluster",
                    "--skip-systemctl-redirect",
                    "15",
                    "main",
                    "restart",
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                _out, error = await restart.communicate()
                assert restart.returncode == 0, error.decode()
            await asyncio.sleep(0.1)
        await wait_rows(pg_dsn, pg_schema, len(sent))
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 30)

    assert await count_rows(pg_dsn, pg_schema) == len(sent)
    ids = {
        row["id"]
        for row in await fetch(pg_dsn, f'SELECT event_id::text AS id FROM "{pg_schema}".events')
    }
    assert ids == {event["event_id"] for event in sent}
