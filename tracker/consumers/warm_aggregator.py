"""Warm aggregator: rolls clean events up into hourly counts for the warm query tier.

For each batch it counts events per (tenant, UTC hour, event_type) and per
(tenant, hour, event_type, param key, param value). It writes those counts and
the batch's event ids as new Parquet files, then atomically replaces the
manifest that lists the files and the broker offsets they cover
(tracker.query.warm_store). After a crash the runtime resumes from
`stored_offsets()`, so every batch is counted exactly once.

Duplicate event ids are skipped against a ledger of the ids seen in the last
`WARM_DEDUP_HOURS` hours of event time. The ledger lives in the same manifest,
so it never disagrees with the counts. A duplicate that arrives later than
that window is counted twice.

Only one aggregator may write a warm directory: `open` takes an exclusive
file lock and fails if another process holds it.

`WARM_SOURCE_TOPIC=events-replay` rebuilds the store from what `tracker replay`
re-published from the Delta archive. The manifest keeps offsets per topic, so
switching back to `events-clean` resumes where the live stream stopped. A
replayed event is counted unless the ledger already contains its id: replay the
hours the store lost, or rebuild into an empty `WARM_DIR`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tracker.broker.base import TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import ConfigError
from tracker.query.warm_store import (
    COUNTS_SCHEMA,
    HOUR_MS,
    IDS_SCHEMA,
    PARAMS_SCHEMA,
    Manifest,
    WarmStore,
)
from tracker.settings import Env, load_env

__all__ = ["WarmAggregator", "WarmAggregatorSettings", "create_sink"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WarmAggregatorSettings:
    """Warm store location, retention, dedup window, compaction interval and source topic."""

    warm_dir: Path
    retention_days: int
    dedup_hours: int
    compact_every_batches: int
    source_topic: str = TOPIC_EVENTS_CLEAN

    @classmethod
    def from_env(cls, env: Env) -> WarmAggregatorSettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
        return cls(
            warm_dir=env.path("WARM_DIR", data_dir / "warm"),
            retention_days=env.int("WARM_RETENTION_DAYS", 30, minimum=1, maximum=3650),
            dedup_hours=env.int("WARM_DEDUP_HOURS", 48, minimum=1, maximum=24 * 30),
            compact_every_batches=env.int("WARM_COMPACT_EVERY_BATCHES", 64, minimum=1),
            source_topic=env.choice(
                "WARM_SOURCE_TOPIC", TOPIC_EVENTS_CLEAN, (TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY)
            ),
        )


def create_sink(env: Env) -> WarmAggregator:
    """Build the `warm-aggregator` sink from the environment (the consumer registry's factory)."""
    return WarmAggregator(WarmAggregatorSettings.from_env(env))


def _valid(event: Any) -> bool:
    """Return whether an event has the fields the rollups need, with the right types."""
    if not isinstance(event, dict):
        return False
    params = event.get("params")
    return (
        isinstance(event.get("event_id"), str)
        and isinstance(event.get("event_type"), str)
        and isinstance(event.get("timestamp"), int)
        and not isinstance(event.get("timestamp"), bool)
        and isinstance(params, dict)
        and isinstance(params.get("key_prefix"), str)
        and all(isinstance(key, str) and isinstance(value, str) for key, value in params.items())
    )


class WarmAggregator(Sink):
    """Sink that writes the warm store's hourly rollups, deduplicated on event id."""

    name = "warm-aggregator"

    def __init__(self, settings: WarmAggregatorSettings | None = None) -> None:
        self.settings = settings or WarmAggregatorSettings.from_env(load_env())
        self.source_topic = self.settings.source_topic
        self.store = WarmStore(self.settings.warm_dir)
        self._manifest = Manifest()
        self._seen: set[str] = set()
        self._lock_handle: int | None = None

    async def open(self, context: SinkContext | None = None) -> None:
        """Lock the warm directory, clean up after a crash and load the id ledger."""
        self.settings.warm_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.settings.warm_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise ConfigError(
                "WARM_DIR", "another warm aggregator already writes this directory"
            ) from None
        self._lock_handle = handle

        self._manifest = self.store.read_manifest()
        self.store.remove_unlisted(self._manifest)
        ids = self.store.scan(self._manifest, "ids").select("event_id").collect()
        self._seen = set(ids["event_id"].to_list())
        logger.info(
            "Warm aggregator opened.",
            extra={"version": self._manifest.version, "ledger_ids": len(self._seen)},
        )

    async def close(self) -> None:
        if self._lock_handle is not None:
            os.close(self._lock_handle)
            self._lock_handle = None

    async def stored_offsets(self) -> dict[int, int] | None:
        return dict(self._manifest.offsets.get(self.source_topic, {}))

    async def process(self, batch: Batch) -> None:
        await asyncio.to_thread(self._process_sync, batch)

    def _process_sync(self, batch: Batch) -> None:
        dead = {index for index, _ in batch.dead_letters}
        rows: list[dict[str, Any]] = []
        batch_ids: set[str] = set()
        for index, event in enumerate(batch.events):
            if index in dead:
                continue
            if not _valid(event):
                batch.dead_letter(
                    index, "event lacks event_id, event_type, timestamp or params.key_prefix"
                )
                continue
            event_id = event["event_id"]
            if event_id in self._seen or event_id in batch_ids:
                continue
            batch_ids.add(event_id)
            rows.append(event)

        manifest = self._manifest
        new_files: dict[str, list[str]] = {"counts": [], "params": [], "ids": []}
        if rows:
            counts, params, ids = self._rollup(rows)
            new_files["counts"].append(self.store.write_frame("counts", counts))
            if params.height:
                new_files["params"].append(self.store.write_frame("params", params))
            new_files["ids"].append(self.store.write_frame("ids", ids))

        newest = max((event["timestamp"] for event in rows), default=None)
        updated = Manifest(
            version=manifest.version + 1,
            files={kind: manifest.files[kind] + new_files[kind] for kind in manifest.files},
            offsets={
                **manifest.offsets,
                self.source_topic: {
                    **manifest.offsets.get(self.source_topic, {}),
                    batch.partition: batch.last_offset,
                },
            },
            data_through_ms=max(filter(None, (manifest.data_through_ms, newest)), default=None),
            batches_since_compaction=manifest.batches_since_compaction + 1,
        )
        self.store.replace_manifest(updated)
        self._manifest = updated
        self._seen |= batch_ids
        logger.info(
            "Warm batch stored.",
            extra={
                "partition": batch.partition,
                "last_offset": batch.last_offset,
                "events": len(rows),
            },
        )

        if updated.batches_since_compaction >= self.settings.compact_every_batches:
            self.compact()

    @staticmethod
    def _rollup(rows: list[dict[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Return the (counts, params, ids) frames of a batch of new, valid events."""
        tenants, hours, event_types = [], [], []
        # One row per (event, param) pair, kept as flat lists: Polars builds flat string
        # columns far faster than nested lists.
        pair_tenants, pair_hours, pair_types, pair_keys, pair_values = [], [], [], [], []
        for event in rows:
            tenant = event["params"]["key_prefix"]
            hour = event["timestamp"] - event["timestamp"] % HOUR_MS
            event_type = event["event_type"]
            tenants.append(tenant)
            hours.append(hour)
            event_types.append(event_type)
            for key, value in event["params"].items():
                pair_tenants.append(tenant)
                pair_hours.append(hour)
                pair_types.append(event_type)
                pair_keys.append(key)
                pair_values.append(value)

        events = pl.DataFrame(
            {"tenant": tenants, "hour": hours, "event_type": event_types},
            schema={"tenant": pl.String, "hour": pl.Int64, "event_type": pl.String},
        )
        counts = events.group_by("tenant", "hour", "event_type").agg(
            pl.len().cast(pl.Int64).alias("count")
        )
        pairs = pl.DataFrame(
            {
                "tenant": pair_tenants,
                "hour": pair_hours,
                "event_type": pair_types,
                "key": pair_keys,
                "value": pair_values,
            },
            schema={key: dtype for key, dtype in PARAMS_SCHEMA.items() if key != "count"},
        )
        params = pairs.group_by("tenant", "hour", "event_type", "key", "value").agg(
            pl.len().cast(pl.Int64).alias("count")
        )
        ids = pl.DataFrame(
            {"event_id": [event["event_id"] for event in rows], "hour": hours}, schema=IDS_SCHEMA
        )
        return counts.select(list(COUNTS_SCHEMA)), params.select(list(PARAMS_SCHEMA)), ids

    def compact(self) -> None:
        """Merge the small files of each kind into one, drop hours past retention and old ledger ids."""
        manifest = self._manifest
        newest = manifest.data_through_ms or 0
        keep_from = newest - newest % HOUR_MS - self.settings.retention_days * 24 * HOUR_MS
        ledger_from = newest - newest % HOUR_MS - self.settings.dedup_hours * HOUR_MS

        files: dict[str, list[str]] = {}
        counts = self.store.scan(manifest, "counts").filter(pl.col("hour") >= keep_from)
        counts = (
            counts.group_by("tenant", "hour", "event_type").agg(pl.col("count").sum()).collect()
        )
        files["counts"] = (
            [self.store.write_frame("counts", counts.sort("tenant", "hour"))]
            if counts.height
            else []
        )
        params = self.store.scan(manifest, "params").filter(pl.col("hour") >= keep_from)
        params = (
            params.group_by("tenant", "hour", "event_type", "key", "value")
            .agg(pl.col("count").sum())
            .collect()
        )
        files["params"] = (
            [self.store.write_frame("params", params.sort("tenant", "key", "hour"))]
            if params.height
            else []
        )
        ids = (
            self.store.scan(manifest, "ids")
            .filter(pl.col("hour") >= ledger_from)
            .unique("event_id")
            .collect()
        )
        files["ids"] = [self.store.write_frame("ids", ids)] if ids.height else []

        updated = Manifest(
            version=manifest.version + 1,
            files=files,
            offsets={topic: dict(stored) for topic, stored in manifest.offsets.items()},
            data_through_ms=manifest.data_through_ms,
            batches_since_compaction=0,
        )
        self.store.replace_manifest(updated)
        self._manifest = updated
        self._seen = set(ids["event_id"].to_list())
        # Readers that loaded the old manifest retry once they find a file gone.
        self.store.remove([name for names in manifest.files.values() for name in names])
        logger.info(
            "Warm store compacted.",
            extra={"version": updated.version, "ledger_ids": len(self._seen)},
        )
