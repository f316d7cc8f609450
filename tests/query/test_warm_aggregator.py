"""Warm aggregator: exactly-once rollups through the real runtime and local broker, crashes and compaction."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.consumers.conftest import PARTITIONS, consumer_settings, open_local_broker, publish
from tests.query.dataset import BASE_MS, generate
from tracker.broker.base import TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY, Broker
from tracker.consumers.runtime import Batch, ConsumerRuntime
from tracker.consumers.warm_aggregator import WarmAggregator, WarmAggregatorSettings, create_sink
from tracker.errors import ConfigError
from tracker.query.model import EventFilter, StatsQuery
from tracker.query.warm import WarmTier
from tracker.query.warm_store import WarmStore
from tracker.settings import Env

END_MS = BASE_MS + 12 * 86_400_000


def settings_for(warm_dir: Path, compact_every: int = 1000) -> WarmAggregatorSettings:
    return WarmAggregatorSettings(
        warm_dir, retention_days=30, dedup_hours=24 * 30, compact_every_batches=compact_every
    )


async def counts_by_type(warm_dir: Path, tenant: str) -> dict[str, int]:
    tier = WarmTier(warm_dir, clock=lambda: END_MS)
    result = await tier.stats(StatsQuery(EventFilter(tenant, BASE_MS, END_MS), ("event_type",)))
    return {row["event_type"]: row["count"] for row in result.rows}


def expected_by_type(events: list[dict[str, Any]], tenant: str) -> dict[str, int]:
    return dict(Counter(e["event_type"] for e in events if e["params"]["key_prefix"] == tenant))


async def run_until_stored(sink: WarmAggregator, broker: Broker, data_dir: Path) -> None:
    """Run the real runtime until the manifest covers every published offset, then stop it."""
    runtime = ConsumerRuntime(sink, broker, consumer_settings(data_dir))
    task = asyncio.create_task(runtime.run())
    ends = {p: await broker.end_offset(TOPIC_EVENTS_CLEAN, p) for p in range(PARTITIONS)}
    wanted = {p: end for p, end in ends.items() if end is not None}
    try:
        async with asyncio.timeout(60):
            while (await sink.stored_offsets() or {}) != wanted:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)


async def test_aggregator_counts_once_through_runtime(data_dir: Path) -> None:
    events = [e for e in generate(seed=3, count=600) if e["params"]["key_prefix"] != "hostile"]
    broker = await open_local_broker(data_dir)
    try:
        # Every event published twice: the topic is at-least-once.
        await publish(broker, TOPIC_EVENTS_CLEAN, events + events[:200], per_message=50)
        sink = WarmAggregator(settings_for(data_dir / "warm", compact_every=4))
        await run_until_stored(sink, broker, data_dir)

        for tenant in ("alpha", "beta", "gamma"):
            assert await counts_by_type(data_dir / "warm", tenant) == expected_by_type(
                events, tenant
            )

        # A restart resumes after the stored offsets and counts nothing twice.
        await publish(broker, TOPIC_EVENTS_CLEAN, events[:100], per_message=50)
        again = WarmAggregator(settings_for(data_dir / "warm"))
        await run_until_stored(again, broker, data_dir)
        for tenant in ("alpha", "beta", "gamma"):
            assert await counts_by_type(data_dir / "warm", tenant) == expected_by_type(
                events, tenant
            )
    finally:
        await broker.close()


async def test_aggregator_crash_before_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(seed=5, count=400)
    sink = WarmAggregator(settings_for(tmp_path))
    await sink.open()
    await sink.process(Batch(0, 0, 0, events[:200], []))

    def crash(manifest: Any) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(sink.store, "replace_manifest", crash)
    with pytest.raises(OSError):
        await sink.process(Batch(0, 1, 1, events[200:], []))
    await sink.close()
    monkeypatch.undo()

    # The restarted sink drops the orphan files and resumes after offset 0.
    restarted = WarmAggregator(settings_for(tmp_path))
    await restarted.open()
    assert await restarted.stored_offsets() == {0: 0}
    await restarted.process(Batch(0, 1, 1, events[200:], []))
    await restarted.close()
    for tenant in ("alpha", "beta", "gamma"):
        assert await counts_by_type(tmp_path, tenant) == expected_by_type(events, tenant)
    manifest = WarmStore(tmp_path).read_manifest()
    listed = {name for names in manifest.files.values() for name in names}
    on_disk = {f"{p.parent.name}/{p.name}" for p in tmp_path.glob("*/*.parquet")}
    assert on_disk == listed


async def test_aggregator_compaction_keeps_counts(tmp_path: Path) -> None:
    events = generate(seed=9, count=900)
    sink = WarmAggregator(settings_for(tmp_path, compact_every=1000))
    await sink.open()
    for offset, start in enumerate(range(0, len(events), 100)):
        await sink.process(Batch(0, offset, offset, events[start : start + 100], []))
    before = {
        tenant: await counts_by_type(tmp_path, tenant) for tenant in ("alpha", "beta", "gamma")
    }
    sink.compact()

    manifest = WarmStore(tmp_path).read_manifest()
    assert [len(manifest.files[kind]) for kind in ("counts", "params", "ids")] == [1, 1, 1]
    after = {
        tenant: await counts_by_type(tmp_path, tenant) for tenant in ("alpha", "beta", "gamma")
    }
    assert after == before
    # The ledger survives compaction: replaying a batch adds nothing.
    await sink.process(Batch(0, 50, 50, events[:300], []))
    assert {
        tenant: await counts_by_type(tmp_path, tenant) for tenant in ("alpha", "beta", "gamma")
    } == before
    await sink.close()


async def test_aggregator_dead_letters_invalid_events(tmp_path: Path) -> None:
    good = generate(seed=1, count=10)
    bad: list[Any] = [
        {"event_id": "x"},
        {**good[0], "event_id": "other", "timestamp": "soon"},
        {**good[0], "event_id": "other2", "params": {"sub1": "no tenant"}},
        {**good[0], "event_id": "other3", "params": {"key_prefix": "alpha", "n": 5}},
        "not an object",
    ]
    batch = Batch(0, 0, 0, good + bad, [])
    sink = WarmAggregator(settings_for(tmp_path))
    await sink.open()
    await sink.process(batch)
    await sink.close()
    assert sorted(index for index, _ in batch.dead_letters) == list(
        range(len(good), len(good) + len(bad))
    )
    assert all("key_prefix" in reason for _, reason in batch.dead_letters)


async def test_aggregator_second_writer_rejected(tmp_path: Path) -> None:
    first = WarmAggregator(settings_for(tmp_path))
    await first.open()
    second = WarmAggregator(settings_for(tmp_path))
    with pytest.raises(ConfigError) as error:
        await second.open()
    assert error.value.variable == "WARM_DIR"
    await first.close()


def test_aggregator_built_from_env(tmp_path: Path) -> None:
    sink = create_sink(Env({"TRACKER_DATA_DIR": str(tmp_path), "WARM_DEDUP_HOURS": "12"}))
    assert sink.name == "warm-aggregator"
    assert sink.source_topic == TOPIC_EVENTS_CLEAN
    assert sink.settings.warm_dir == tmp_path / "warm"
    assert sink.settings.dedup_hours == 12
    with pytest.raises(ConfigError):
        create_sink(Env({"WARM_DEDUP_HOURS": "0"}))


def test_aggregator_source_topic_from_env(tmp_path: Path) -> None:
    sink = create_sink(
        Env({"TRACKER_DATA_DIR": str(tmp_path), "WARM_SOURCE_TOPIC": TOPIC_EVENTS_REPLAY})
    )
    assert sink.source_topic == TOPIC_EVENTS_REPLAY
    with pytest.raises(ConfigError) as error:
        create_sink(Env({"TRACKER_DATA_DIR": str(tmp_path), "WARM_SOURCE_TOPIC": "events"}))
    assert error.value.variable == "WARM_SOURCE_TOPIC"


async def test_aggregator_keeps_offsets_per_topic(tmp_path: Path) -> None:
    events = generate(seed=9, count=300)
    live = WarmAggregator(settings_for(tmp_path))
    await live.open()
    await live.process(Batch(0, 0, 4, events[:100], []))
    await live.close()

    rebuild = WarmAggregator(replace(settings_for(tmp_path), source_topic=TOPIC_EVENTS_REPLAY))
    await rebuild.open()
    # The replay topic starts from its own beginning, not from the live topic's offsets.
    assert await rebuild.stored_offsets() == {}
    await rebuild.process(Batch(0, 0, 9, events, []))
    assert await rebuild.stored_offsets() == {0: 9}
    await rebuild.close()

    resumed = WarmAggregator(settings_for(tmp_path))
    await resumed.open()
    assert await resumed.stored_offsets() == {0: 4}
    await resumed.close()
    # The first 100 events came through both topics and are counted once.
    for tenant in ("alpha", "beta", "gamma"):
        assert await counts_by_type(tmp_path, tenant) == expected_by_type(events, tenant)


async def test_aggregator_reads_manifest_without_topics(tmp_path: Path) -> None:
    events = generate(seed=11, count=50)
    sink = WarmAggregator(settings_for(tmp_path))
    await sink.open()
    await sink.process(Batch(1, 0, 6, events, []))
    await sink.close()
    # Rewrite the manifest as stores kept it before offsets were grouped by topic.
    path = tmp_path / "manifest.json"
    raw = orjson.loads(path.read_bytes())
    raw["offsets"] = raw["offsets"][TOPIC_EVENTS_CLEAN]
    path.write_bytes(orjson.dumps(raw))

    reopened = WarmAggregator(settings_for(tmp_path))
    await reopened.open()
    assert await reopened.stored_offsets() == {1: 6}
    await reopened.close()


async def test_warm_read_survives_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(seed=12, count=600)
    sink = WarmAggregator(settings_for(tmp_path))
    await sink.open()
    for offset, start in enumerate(range(0, len(events), 200)):
        await sink.process(Batch(0, offset, offset, events[start : start + 200], []))
    stale = WarmStore(tmp_path).read_manifest()
    sink.compact()
    await sink.close()

    # The reader loads the manifest from before compaction, whose files are gone now.
    tier = WarmTier(tmp_path, clock=lambda: END_MS)
    manifests = [stale]
    real_read = tier._store.read_manifest
    monkeypatch.setattr(
        tier._store, "read_manifest", lambda: manifests.pop() if manifests else real_read()
    )
    result = await tier.stats(StatsQuery(EventFilter("gamma", BASE_MS, END_MS), ("event_type",)))
    assert manifests == []
    assert not any((tmp_path / name).exists() for name in stale.files["counts"])
    counts = {row["event_type"]: row["count"] for row in result.rows}
    assert counts == expected_by_type(events, "gamma")
