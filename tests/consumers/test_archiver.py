"""Delta archiver against the real local broker and real Delta tables on disk."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tests.consumers.conftest import (
    PARTITIONS,
    consumer_settings,
    make_event,
    open_local_broker,
    partition_of,
    publish,
    read_topic,
)
from tracker.broker.base import TOPIC_DEAD_LETTERS, TOPIC_EVENTS_CLEAN, Broker
from tracker.consumers.archive_dedup import RecentEventIds
from tracker.consumers.archive_table import ARCHIVE_SCHEMA, app_id_for, events_to_table
from tracker.consumers.archiver import (
    ArchiverSink,
    ArchiveSettings,
    create_filtered_sink,
    create_sink,
)
from tracker.consumers.runtime import ConsumerRuntime
from tracker.errors import ConfigError
from tracker.settings import Env

TENANTS = ["acme", "globex", "initech", "umbrella"]
DAY_MS = 86_400_000


def archive_settings(data_dir: Path, **overrides: Any) -> ArchiveSettings:
    values: dict[str, Any] = {
        "root_uri": str(data_dir / "delta"),
        "commit_seconds": 0.2,
        "commit_events": 1_000,
        "compact_every_seconds": 0.0,
        "vacuum_retention_hours": 0.0,
    }
    values.update(overrides)
    return ArchiveSettings(**values)


def make_sink(data_dir: Path, **overrides: Any) -> ArchiverSink:
    return ArchiverSink(
        "archiver", TOPIC_EVENTS_CLEAN, "events", archive_settings(data_dir, **overrides)
    )


async def run_until_archived(
    sink: ArchiverSink,
    broker: Broker,
    data_dir: Path,
    timeout: float = 20.0,
    *,
    until_read: bool = False,
    **settings: str,
) -> None:
    """Run the real runtime until the table holds every published offset, then stop it.

    With `until_read`, stop once the runtime has read every offset instead, so the
    buffer is flushed by `close`.
    """
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir, **settings))
    task = asyncio.create_task(runtime.run())
    ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}
    wanted = {p: end for p, end in ends.items() if end is not None}
    try:
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.05)
                if task.done():
                    task.result()
                if until_read:
                    done = {
                        p: await broker.committed(TOPIC_EVENTS_CLEAN, sink.name, p) for p in wanted
                    }
                else:
                    done = await sink.stored_offsets() or {}
                if all(done.get(p) == end for p, end in wanted.items()):
                    break
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)


def table_rows(data_dir: Path, name: str = "events") -> pa.Table:
    return DeltaTable(str(data_dir / "delta" / name)).to_pyarrow_table()


def test_events_to_table_schema_and_partitions() -> None:
    events = [
        make_event("acme", timestamp=1_770_704_294_008, sub1="google"),
        make_event("globex", "postback", timestamp=0),
    ]

    converted = events_to_table(events)

    assert converted.table.schema == ARCHIVE_SCHEMA
    assert converted.rejected == []
    rows = converted.table.to_pylist()
    assert rows[0]["date"] == "2026-02-10"
    assert rows[1]["date"] == "1970-01-01"
    assert dict(rows[0]["params"]) == {"key_prefix": "acme", "sub1": "google"}
    assert rows[0]["key_prefix"] == "acme"
    assert rows[1]["event_type"] == "postback"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("event_id"), "event_id"),
        (lambda e: e.update(timestamp="1770704294008"), "timestamp"),
        (lambda e: e.update(timestamp=-1), "timestamp"),
        (lambda e: e.update(timestamp=True), "timestamp"),
        (lambda e: e.update(params=[]), "params"),
        (lambda e: e["params"].pop("key_prefix"), "key_prefix"),
        (lambda e: e["params"].update(n=5), "params values"),
        (lambda e: e.update(ip=None), "ip"),
        (lambda e: e.update(event_type=""), "event_type"),
    ],
)
def test_events_to_table_rejects_malformed(mutate: Any, reason: str) -> None:
    bad = make_event("acme")
    mutate(bad)

    converted = events_to_table([make_event("acme"), bad, make_event("globex")])

    assert converted.kept == [0, 2]
    assert len(converted.rejected) == 1
    assert converted.rejected[0][0] == 1
    assert reason in converted.rejected[0][1]
    assert converted.table.num_rows == 2


def test_events_to_table_rejects_non_object() -> None:
    converted = events_to_table(["not an object"])  # type: ignore[list-item]

    assert converted.rejected == [(0, "event is not a JSON object")]


def test_recent_ids_drop_duplicates_and_expire() -> None:
    now = [0.0]
    recent = RecentEventIds(10.0, 3, clock=lambda: now[0])
    recent.add(["a", "b"])

    pending: set[str] = set()
    assert recent.take_new(["a", "c", "c", "d"], pending) == [False, True, False, True]
    assert pending == {"c", "d"}

    recent.add(["c", "d"])
    assert len(recent) == 3
    assert "a" not in recent

    now[0] = 11.0
    recent.add(["e"])
    assert list(recent._ids) == ["e"]


def test_settings_default_root_is_data_dir(tmp_path: Path) -> None:
    settings = ArchiveSettings.from_env(Env({"TRACKER_DATA_DIR": str(tmp_path)}))

    assert settings.table_uri("events") == f"{tmp_path}/delta/events"
    assert settings.storage_options == {}


def test_settings_s3_uri_reads_credentials() -> None:
    settings = ArchiveSettings.from_env(
        Env(
            {
                "ARCHIVE_URI": "s3://bucket/tracker",
                "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
                "AWS_ACCESS_KEY_ID": "id",
                "AWS_SECRET_ACCESS_KEY": "secret",
                "AWS_REGION": "eu-west-1",
            }
        )
    )

    assert settings.table_uri("events") == "s3://bucket/tracker/events"
    assert settings.storage_options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert settings.storage_options["AWS_ALLOW_HTTP"] == "true"
    assert settings.storage_options["AWS_REGION"] == "eu-west-1"


def test_settings_r2_builds_endpoint() -> None:
    settings = ArchiveSettings.from_env(
        Env(
            {
                "R2_BUCKET": "archive",
                "R2_ACCOUNT_ID": "abc123",
                "R2_ACCESS_KEY_ID": "k",
                "R2_SECRET_ACCESS_KEY": "s",
            }
        )
    )

    assert settings.root_uri == "s3://archive/delta"
    assert settings.storage_options["AWS_ENDPOINT_URL"] == "https://abc123.r2.cloudflarestorage.com"
    assert settings.storage_options["AWS_REGION"] == "auto"


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"R2_BUCKET": "archive"}, "R2_ACCOUNT_ID"),
        ({"ARCHIVE_URI": "gs://bucket/x"}, "ARCHIVE_URI"),
        ({"ARCHIVE_COMMIT_EVENTS": "0"}, "ARCHIVE_COMMIT_EVENTS"),
        ({"ARCHIVE_COMMIT_SECONDS": "soon"}, "ARCHIVE_COMMIT_SECONDS"),
    ],
)
def test_settings_reject_invalid(values: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ArchiveSettings.from_env(Env(values))

    assert caught.value.variable == variable


def test_factories_pick_topics_and_tables(tmp_path: Path) -> None:
    env = Env({"TRACKER_DATA_DIR": str(tmp_path)})

    clean = create_sink(env)
    filtered = create_filtered_sink(env)

    assert (clean.name, clean.source_topic, clean.table.uri) == (
        "archiver",
        "events-clean",
        f"{tmp_path}/delta/events",
    )
    assert (filtered.name, filtered.source_topic) == ("archiver-filtered", "events-filtered")
    assert filtered.table.uri == f"{tmp_path}/delta/events_filtered"


async def test_archiver_writes_every_event_once(broker: Broker, data_dir: Path) -> None:
    events = [
        make_event(TENANTS[i % 4], timestamp=1_770_704_294_008 + i * 3_600_000, n=str(i))
        for i in range(600)
    ]
    duplicates = [dict(event) for event in events[:50]]
    await publish(broker, TOPIC_EVENTS_CLEAN, events, per_message=40)
    await publish(broker, TOPIC_EVENTS_CLEAN, duplicates, per_message=40)
    sink = make_sink(data_dir)

    await run_until_archived(sink, broker, data_dir)

    rows = table_rows(data_dir)
    assert rows.num_rows == 600
    assert pc.count_distinct(rows.column("event_id")).as_py() == 600
    table = DeltaTable(str(data_dir / "delta" / "events"))
    for partition in range(PARTITIONS):
        end = await broker.end_offset(TOPIC_EVENTS_CLEAN, partition)
        assert table.transaction_version(app_id_for("archiver", partition)) == end
    assert set(rows.column("key_prefix").to_pylist()) == set(TENANTS)
    assert {"2026-02-10", "2026-02-11", "2026-03-05"} <= set(rows.column("date").to_pylist())


async def test_archiver_dead_letters_malformed_events(broker: Broker, data_dir: Path) -> None:
    bad = make_event("acme")
    bad["timestamp"] = "yesterday"
    await publish(broker, TOPIC_EVENTS_CLEAN, [make_event("acme"), bad, make_event("acme")])
    sink = make_sink(data_dir)

    await run_until_archived(sink, broker, data_dir)

    assert table_rows(data_dir).num_rows == 2
    dead = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert len(dead) == 1
    assert dead[0]["consumer"] == "archiver"
    assert "timestamp" in dead[0]["reason"]
    assert dead[0]["event"]["event_id"] == bad["event_id"]


async def test_archiver_dead_letters_non_json_documents(broker: Broker, data_dir: Path) -> None:
    from tracker._core import encode_record_batch

    good = [make_event("acme"), make_event("acme")]
    documents = [orjson.dumps(good[0]), b"{not json", b'"text"', orjson.dumps(good[1])]
    await broker.publish(TOPIC_EVENTS_CLEAN, partition_of("acme"), [encode_record_batch(documents)])
    sink = make_sink(data_dir)

    await run_until_archived(sink, broker, data_dir)

    rows = table_rows(data_dir)
    assert sorted(rows.column("event_id").to_pylist()) == sorted(e["event_id"] for e in good)
    dead = await read_topic(broker, TOPIC_DEAD_LETTERS)
    assert [letter["reason"] for letter in dead] == ["event is not a JSON object"] * 2
    assert [base64.b64decode(letter["payload_base64"]) for letter in dead] == documents[1:3]
    assert all(letter["offset"] == 0 for letter in dead)


async def test_archiver_restart_resumes_after_table(broker: Broker, data_dir: Path) -> None:
    first = [make_event("acme", n=str(i)) for i in range(100)]
    await publish(broker, TOPIC_EVENTS_CLEAN, first, per_message=10)
    await run_until_archived(make_sink(data_dir), broker, data_dir)

    # The broker offset is moved ahead of the table, as after a crash with a buffer in hand.
    partition = partition_of("acme")
    second = [make_event("acme", n=str(i)) for i in range(100, 150)]
    await publish(broker, TOPIC_EVENTS_CLEAN, second, per_message=10)
    await broker.commit(
        TOPIC_EVENTS_CLEAN,
        "archiver",
        partition,
        await broker.end_offset(TOPIC_EVENTS_CLEAN, partition),
    )
    # A redelivered duplicate of an archived event, too.
    await publish(broker, TOPIC_EVENTS_CLEAN, [first[0]])

    restarted = make_sink(data_dir)
    await run_until_archived(restarted, broker, data_dir)

    rows = table_rows(data_dir)
    assert rows.num_rows == 150
    assert pc.count_distinct(rows.column("event_id")).as_py() == 150
    assert len(restarted.recent) >= 100


async def test_archiver_commits_by_event_count(broker: Broker, data_dir: Path) -> None:
    await publish(
        broker,
        TOPIC_EVENTS_CLEAN,
        [make_event("acme", n=str(i)) for i in range(500)],
        per_message=10,
    )
    sink = make_sink(data_dir, commit_seconds=3600.0, commit_events=200)

    await run_until_archived(sink, broker, data_dir, until_read=True, CONSUMER_POLL_MESSAGES="2")

    history = DeltaTable(str(data_dir / "delta" / "events")).history()
    appends = [entry for entry in history if entry.get("operation") == "WRITE"]
    # The partition's first poll (20 events) commits at once, then two 200-event
    # buffers, then the last 80 events when the buffer is flushed at stop.
    assert len(appends) == 4
    assert table_rows(data_dir).num_rows == 500


async def test_archiver_flushes_on_timer(broker: Broker, data_dir: Path) -> None:
    await publish(broker, TOPIC_EVENTS_CLEAN, [make_event("acme")])
    sink = make_sink(data_dir, commit_seconds=0.2, commit_events=1_000_000)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    task = asyncio.create_task(runtime.run())
    try:
        async with asyncio.timeout(10):
            while (await sink.stored_offsets() or {}).get(partition_of("acme")) != 0:
                await asyncio.sleep(0.05)
        await publish(broker, TOPIC_EVENTS_CLEAN, [make_event("acme")])
        async with asyncio.timeout(10):
            while (await sink.stored_offsets() or {}).get(partition_of("acme")) != 1:
                await asyncio.sleep(0.05)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)

    assert table_rows(data_dir).num_rows == 2


async def test_maintenance_compacts_and_keeps_rows(broker: Broker, data_dir: Path) -> None:
    now_ms = 1_770_704_294_008
    sink = make_sink(data_dir, commit_events=1)
    for i in range(12):
        await publish(
            broker, TOPIC_EVENTS_CLEAN, [make_event("acme", timestamp=now_ms + i, n=str(i))]
        )
    await run_until_archived(sink, broker, data_dir, CONSUMER_POLL_MESSAGES="1")
    table = DeltaTable(str(data_dir / "delta" / "events"))
    files_before = len(table.file_uris())
    offsets_before = {
        p: table.transaction_version(app_id_for("archiver", p)) for p in range(PARTITIONS)
    }

    from tracker.consumers.archive_maintenance import MaintenancePolicy, run_maintenance

    result = run_maintenance(
        sink.table, MaintenancePolicy(vacuum_retention_hours=0), now=now_ms / 1000
    )

    table = DeltaTable(str(data_dir / "delta" / "events"))
    assert files_before >= 12
    assert len(table.file_uris()) == 1
    assert result["files_removed"] == files_before
    assert result["files_vacuumed"] >= files_before
    assert table.to_pyarrow_table().num_rows == 12
    assert {
        p: table.transaction_version(app_id_for("archiver", p)) for p in range(PARTITIONS)
    } == offsets_before
    assert list((data_dir / "delta" / "events" / "_delta_log").glob("*.checkpoint.parquet"))


async def test_archiver_filtered_sink_uses_own_table(data_dir: Path) -> None:
    from tracker.broker.base import TOPIC_EVENTS_FILTERED

    broker = await open_local_broker(data_dir)
    try:
        await publish(broker, TOPIC_EVENTS_FILTERED, [make_event("acme"), make_event("globex")])
        sink = ArchiverSink(
            "archiver-filtered",
            TOPIC_EVENTS_FILTERED,
            "events_filtered",
            archive_settings(data_dir),
        )
        runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
        task = asyncio.create_task(runtime.run())
        async with asyncio.timeout(15):
            while len(await sink.stored_offsets() or {}) < 2:
                await asyncio.sleep(0.05)
        runtime.request_stop()
        await asyncio.wait_for(task, 20)
    finally:
        await broker.close()

    assert table_rows(data_dir, "events_filtered").num_rows == 2
    assert not (data_dir / "delta" / "events").exists()


async def test_maintenance_timer_compacts_table(broker: Broker, data_dir: Path) -> None:
    sink = make_sink(data_dir, commit_events=1, compact_every_seconds=0.5)
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir, CONSUMER_POLL_MESSAGES="1"))
    now_ms = int(time.time() * 1000)
    for i in range(6):
        await publish(
            broker, TOPIC_EVENTS_CLEAN, [make_event("acme", timestamp=now_ms + i, n=str(i))]
        )
    task = asyncio.create_task(runtime.run())
    table_path = str(data_dir / "delta" / "events")
    try:
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.1)
                operations = [entry.get("operation") for entry in DeltaTable(table_path).history()]
                if "OPTIMIZE" in operations and "VACUUM END" in operations:
                    break
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)

    table = DeltaTable(table_path)
    assert table.to_pyarrow_table().num_rows == 6
    assert table.transaction_version(app_id_for("archiver", partition_of("acme"))) == 5


@pytest.mark.parametrize(
    ("offsets", "expected", "start"),
    [
        ([5, 5, 6, 7], None, 0),
        ([5, 5, 6, 7], 5, 0),
        ([5, 5, 6, 7], 6, 2),
        ([5, 5, 6, 7], 7, 3),
        ([5, 5, 6, 7], 8, 4),
    ],
)
def test_first_index_at_skips_buffered_prefix(
    offsets: list[int], expected: int | None, start: int
) -> None:
    from tracker.consumers.archiver import _first_index_at
    from tracker.consumers.runtime import Batch

    batch = Batch(0, offsets[0], offsets[-1], [], [b"{}"] * len(offsets), offsets)

    assert _first_index_at(batch, expected) == start
