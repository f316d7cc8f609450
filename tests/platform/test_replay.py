"""`tracker replay`: archived events go back onto a topic byte for byte, and the hot writer
and the warm aggregator rebuilt from that topic hold each event once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.consumers.conftest import (
    PARTITIONS,
    broker_env,
    consumer_settings,
    make_event,
    open_local_broker,
    publish,
    read_topic,
    start_consumer,
)
from tracker.broker.base import TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY
from tracker.consumers.archiver import ArchiverSink, ArchiveSettings
from tracker.consumers.runtime import ConsumerRuntime
from tracker.query.model import EventFilter, StatsQuery
from tracker.query.warm import WarmTier

DAY_MS = 86_400_000
START_MS = 1_796_342_400_000  # 2026-12-04T00:00:00Z


def _events() -> list[dict]:
    events = []
    for index in range(240):
        tenant = ("acme", "globex", "initech")[index % 3]
        timestamp = START_MS - DAY_MS + index * 600_000  # every 10 minutes over 40 hours
        events.append(
            make_event(
                tenant,
                "click" if index % 4 else "postback",
                timestamp=timestamp,
                sub1=f"s{index % 5}",
            )
        )
    return events


async def _archive(data_dir: Path, events: list[dict]) -> None:
    broker = await open_local_broker(data_dir)
    try:
        await publish(broker, TOPIC_EVENTS_CLEAN, events, per_message=50)
        settings = ArchiveSettings(
            root_uri=str(data_dir / "delta"), commit_seconds=0.2, commit_events=1_000
        )
        sink = ArchiverSink("archiver", TOPIC_EVENTS_CLEAN, "events", settings)
        runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
        task = asyncio.create_task(runtime.run())
        ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}
        wanted = {p: end for p, end in ends.items() if end is not None}
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.05)
                stored = await sink.stored_offsets() or {}
                if all(stored.get(p) == end for p, end in wanted.items()):
                    break
        runtime.request_stop()
        await asyncio.wait_for(task, 20)
    finally:
        await broker.close()


def _replay(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **broker_env(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "tracker.cli.main", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _replayed(data_dir: Path) -> list[dict]:
    broker = await open_local_broker(data_dir)
    try:
        return await read_topic(broker, TOPIC_EVENTS_REPLAY)
    finally:
        await broker.close()


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    data_dir = tmp_path_factory.mktemp("replay")
    events = _events()
    asyncio.run(_archive(data_dir, events))
    return data_dir, events


def test_replay_dry_run_counts_range(archived):
    data_dir, events = archived
    start, end = START_MS - DAY_MS, START_MS
    done = _replay(
        data_dir, "--from", str(start), "--to", str(end), "--tenant", "acme", "--dry-run", "--json"
    )
    assert done.returncode == 0, done.stderr
    expected = sum(
        1 for e in events if e["params"]["key_prefix"] == "acme" and start <= e["timestamp"] < end
    )
    assert json.loads(done.stdout) == {
        "dry_run": True,
        "events": expected,
        "topic": TOPIC_EVENTS_REPLAY,
    }


def test_replay_republishes_events_unchanged(archived):
    data_dir, events = archived
    done = _replay(
        data_dir, "--from", "2026-12-03T00:00:00Z", "--to", "2026-12-05T00:00:00Z", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events"] == len(events)

    replayed = asyncio.run(_replayed(data_dir))
    assert len(replayed) == len(events)
    by_id = {event["event_id"]: event for event in events}
    for document in replayed:
        original = by_id[document["event_id"]]
        assert orjson.dumps(document) == orjson.dumps(original)


def test_replay_rebuilds_hot_tier_once(archived, pg_dsn: str, pg_schema: str):
    data_dir, events = archived
    writer = start_consumer(
        "hot-writer",
        data_dir,
        HOT_DSN=pg_dsn,
        HOT_SCHEMA=pg_schema,
        HOT_RETENTION_DAYS="3650",
        HOT_SOURCE_TOPIC=TOPIC_EVENTS_REPLAY,
    )
    try:
        # Two replays of overlapping ranges put most events on the topic twice.
        for start in ("2026-12-03T00:00:00Z", "2026-12-03T12:00:00Z"):
            done = _replay(data_dir, "--from", start, "--to", "2026-12-05T00:00:00Z")
            assert done.returncode == 0, done.stderr

        async def rows() -> tuple[int, int]:
            connection = await asyncpg.connect(pg_dsn)
            try:
                table = f'"{pg_schema}".events'
                exists = await connection.fetchval(
                    "SELECT to_regclass($1)", f'"{pg_schema}".events'
                )
                if exists is None:
                    return 0, 0
                return await connection.fetchrow(
                    f"SELECT count(*), count(DISTINCT event_id) FROM {table}"
                )
            finally:
                await connection.close()

        async def wait_for_rows() -> tuple[int, int]:
            async with asyncio.timeout(60):
                while True:
                    total, _ = await rows()
                    if total >= len(events):
                        await asyncio.sleep(1.0)  # let the second replay's duplicates arrive too
                        return await rows()
                    await asyncio.sleep(0.2)

        total, distinct = asyncio.run(wait_for_rows())
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    assert total == len(events)
    assert distinct == len(events)


def test_replay_rebuilds_lost_warm_store_once(archived, tmp_path: Path):
    data_dir, events = archived
    warm_dir = tmp_path / "warm"  # the lost store: nothing left of it
    aggregator = start_consumer(
        "warm-aggregator",
        data_dir,
        WARM_DIR=str(warm_dir),
        WARM_SOURCE_TOPIC=TOPIC_EVENTS_REPLAY,
    )
    try:
        # Overlapping replays: the second re-publishes most events a second time.
        for start in ("2026-12-03T00:00:00Z", "2026-12-03T12:00:00Z"):
            done = _replay(data_dir, "--from", start, "--to", "2026-12-05T00:00:00Z")
            assert done.returncode == 0, done.stderr

        tier = WarmTier(warm_dir, clock=lambda: START_MS + DAY_MS)

        async def counts() -> dict[tuple[str, str], int]:
            found: dict[tuple[str, str], int] = {}
            for tenant in ("acme", "globex", "initech"):
                query = StatsQuery(
                    EventFilter(tenant, START_MS - 2 * DAY_MS, START_MS + DAY_MS), ("event_type",)
                )
                for row in (await tier.stats(query)).rows:
                    found[(tenant, row["event_type"])] = row["count"]
            return found

        async def wait_for_counts() -> dict[tuple[str, str], int]:
            async with asyncio.timeout(60):
                while True:
                    stored = warm_dir.joinpath("manifest.json").exists()
                    if stored and sum((await counts()).values()) >= len(events):
                        await asyncio.sleep(1.0)  # let the second replay arrive too
                        return await counts()
                    await asyncio.sleep(0.2)

        found = asyncio.run(wait_for_counts())
    finally:
        aggregator.terminate()
        aggregator.wait(timeout=30)
    expected: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event["params"]["key_prefix"], event["event_type"])
        expected[key] = expected.get(key, 0) + 1
    assert found == expected


def test_replay_rejects_reversed_range(archived):
    data_dir, _ = archived
    done = _replay(data_dir, "--from", "2026-12-05T00:00:00Z", "--to", "2026-12-04T00:00:00Z")
    assert done.returncode == 1
    assert "--to" in done.stderr


def test_replay_rejects_malformed_time(archived):
    data_dir, _ = archived
    done = _replay(data_dir, "--from", "yesterday", "--to", "2026-12-04T00:00:00Z")
    assert done.returncode == 1
    assert "--from" in done.stderr
    assert "ISO 8601" in done.stderr


def test_replay_without_archive_names_problem(tmp_path: Path):
    done = _replay(tmp_path, "--from", "2026-12-03T00:00:00Z", "--to", "2026-12-04T00:00:00Z")
    assert done.returncode == 1
    assert "no Delta table" in done.stderr
