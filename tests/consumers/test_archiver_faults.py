"""Archiver under faults: kill -9 during load, and a table on a local S3 emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tests.conftest import free_port
from tests.consumers.conftest import (
    PARTITIONS,
    make_event,
    open_local_broker,
    publish,
    start_consumer,
)
from tracker.broker.base import TOPIC_EVENTS_CLEAN
from tracker.consumers.archive_table import app_id_for
from tracker.consumers.archiver import ArchiverSink, ArchiveSettings

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


def archiver_env(data_dir: Path) -> dict[str, str]:
    return {
        "ARCHIVE_COMMIT_SECONDS": "0.3",
        "ARCHIVE_COMMIT_EVENTS": "1500",
        "ARCHIVE_COMPACT_EVERY_SECONDS": "0",
        "CONSUMER_POLL_MESSAGES": "4",
    }


def archived_offsets(table_uri: str) -> int:
    """Return the sum of archived offsets over partitions (-1 each for none), or -PARTITIONS."""
    try:
        table = DeltaTable(table_uri)
    except Exception:  # the table is created by the first archiver start
        return -PARTITIONS
    return sum(
        version
        if (version := table.transaction_version(app_id_for("archiver", p))) is not None
        else -1
        for p in range(PARTITIONS)
    )


async def wait_for_progress(table_uri: str, before: int, process: Any) -> None:
    """Wait until the restarted archiver has committed something new, so a kill hits a live writer."""
    deadline = time.monotonic() + 30
    while archived_offsets(table_uri) <= before:
        assert process.poll() is None, "the archiver exited on its own"
        assert time.monotonic() < deadline, "the archiver made no progress within 30 s"
        await asyncio.sleep(0.05)


async def archived_through(table_uri: str, ends: dict[int, int]) -> bool:
    try:
        table = DeltaTable(table_uri)
    except Exception:  # the table is created by the first archiver start
        return False
    return all(
        table.transaction_version(app_id_for("archiver", p)) == end for p, end in ends.items()
    )


@pytest.mark.slow
async def test_kill_nine_loses_and_duplicates_nothing(data_dir: Path) -> None:
    rng = random.Random(20261204)
    broker = await open_local_broker(data_dir)
    sent: list[dict[str, Any]] = []
    env = archiver_env(data_dir)
    process = start_consumer("archiver", data_dir, **env)
    kills = 0
    table_uri = str(data_dir / "delta" / "events")
    progress_at_start = archived_offsets(table_uri)
    try:
        for round_number in range(24):
            events = [make_event(rng.choice(TENANTS), n=str(len(sent) + i)) for i in range(500)]
            sent.extend(events)
            # Client retries and an at-least-once filter repeat event ids.
            repeats = [dict(event) for event in rng.sample(sent, 20)]
            await publish(broker, TOPIC_EVENTS_CLEAN, events + repeats, per_message=50)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            if round_number % 5 == 4:
                await wait_for_progress(table_uri, progress_at_start, process)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                kills += 1
                progress_at_start = archived_offsets(table_uri)
                process = start_consumer("archiver", data_dir, **env)

        ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}
        wanted = {p: end for p, end in ends.items() if end is not None}
        deadline = time.monotonic() + 60
        while not await archived_through(table_uri, wanted):
            assert process.poll() is None, (
                process.stderr.read().decode()[-3000:] if process.stderr else ""
            )
            assert time.monotonic() < deadline, (
                "the archiver did not reach the end offsets within 60 s"
            )
            await asyncio.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except Exception:
            process.kill()
        await broker.close()

    rows = DeltaTable(table_uri).to_pyarrow_table(columns=["event_id"])
    assert kills == 4
    assert rows.num_rows == len(sent)
    assert pc.count_distinct(rows.column("event_id")).as_py() == len(sent)
    assert set(rows.column("event_id").to_pylist()) == {event["event_id"] for event in sent}


@pytest.fixture
def s3_server() -> Any:
    """A local S3 emulator (moto in server mode) on a free loopback port; no real endpoint is used."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_archiver_writes_to_s3_emulator(
    data_dir: Path, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from tests.consumers.conftest import consumer_settings
    from tracker.consumers.runtime import ConsumerRuntime
    from tracker.settings import Env

    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(
        Bucket="archive"
    )
    settings = ArchiveSettings.from_env(
        Env({"ARCHIVE_URI": "s3://archive/tracker", "S3_ENDPOINT_URL": s3_server, **credentials})
    )
    settings = dataclasses.replace(settings, commit_seconds=0.2, compact_every_seconds=0.0)

    broker = await open_local_broker(data_dir)
    events = [make_event(TENANTS[i % 3], n=str(i)) for i in range(300)]
    try:
        await publish(broker, TOPIC_EVENTS_CLEAN, events + events[:10], per_message=30)
        sink = ArchiverSink("archiver", TOPIC_EVENTS_CLEAN, "events", settings)
        runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
        task = asyncio.create_task(runtime.run())
        ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}
        wanted = {p: end for p, end in ends.items() if end is not None}
        async with asyncio.timeout(30):
            while {p: (await sink.stored_offsets() or {}).get(p) for p in wanted} != wanted:
                await asyncio.sleep(0.05)
        runtime.request_stop()
        await asyncio.wait_for(task, 20)

        restarted = ArchiverSink("archiver", TOPIC_EVENTS_CLEAN, "events", settings)
        from tracker.consumers.runtime import SinkContext

        await restarted.open(
            SinkContext(
                broker=broker,
                settings=consumer_settings(data_dir),
                metrics=runtime.metrics,
                logger=runtime.context.logger,
            )
        )
        stored = await restarted.stored_offsets()
        await restarted.close()
    finally:
        await broker.close()

    table = DeltaTable("s3://archive/tracker/events", storage_options=settings.storage_options)
    rows = table.to_pyarrow_table(columns=["event_id", "key_prefix"])
    assert rows.num_rows == 300
    assert pc.count_distinct(rows.column("event_id")).as_py() == 300
    assert stored == wanted
    assert len(restarted.recent) == 300
