"""Delta Lake archiver: the cold tier's sink, exactly once per event.

Sinks and tables
----------------
`archiver` reads `events-clean` into `<root>/events`, the table analytics read.
`archiver-filtered` reads `events-filtered` into `<root>/events_filtered`, so the
archive keeps what the event filter removed without it reaching analytics.

`<root>` is `ARCHIVE_URI` when set (a local path or `s3://bucket/prefix`, with
`S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`),
else `s3://<R2_BUCKET>/delta` on Cloudflare R2 when `R2_BUCKET` is set (with
`R2_ACCOUNT_ID`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`), else
`<TRACKER_DATA_DIR>/delta`.

Table layout (one row per event)
--------------------------------
=================  ========================  ==========================================
column             Arrow / Delta type        content
=================  ========================  ==========================================
event_id           string                    UUIDv7 text, unique in the table
event_type         string
timestamp          int64                     Unix milliseconds (UTC), set by ingest
ip                 string                    as in the event ("" when absent)
user_agent         string
referer            string
accept_language    string
request_path       string
request_host       string
params             map<string, string>       the whole params object, key_prefix included
key_prefix         string   (partition)      params.key_prefix, the tenant
date               string   (partition)      UTC day of `timestamp`, "YYYY-MM-DD"
=================  ========================  ==========================================

Partition columns are strings, so `date` compares lexically in day order. Filter
on both `date` (prunes files) and `timestamp` (exact bounds); `timestamp` stays a
plain int64 because both DataFusion and Polars compare integers without time
zone casts. Read a param with `params['sub1']` in DataFusion SQL, or
`pl.col("params").list.eval(...)` / a struct unnest in Polars.

Exactly once
------------
Each Delta commit carries a transaction action `appId = "<sink>-p<partition>"`,
`version = last broker offset written`, for every partition in it. At start the
sink reads those versions (`stored_offsets`), moves the broker's committed offset
back to them, and the runtime resumes right after. `event_id` duplicates within
the broker stream (an at-least-once filter, client retries) are dropped against
the ids archived during the last `ARCHIVE_DEDUP_WINDOW_SECONDS`, held in memory
and reloaded from the table at start.

The sink buffers across batches and commits every `ARCHIVE_COMMIT_SECONDS` or
`ARCHIVE_COMMIT_EVENTS`, whichever comes first; compaction, checkpoints and
vacuum run on `ARCHIVE_COMPACT_EVERY_SECONDS` (see `archive_maintenance`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tracker.broker.base import TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_FILTERED
from tracker.consumers.archive_dedup import RecentEventIds
from tracker.consumers.archive_maintenance import MaintenancePolicy, run_maintenance
from tracker.consumers.archive_table import ARCHIVE_SCHEMA, ArchiveTable, documents_to_table
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import ConfigError, RetryableSinkError, SinkError
from tracker.settings import Env

__all__ = ["ArchiveSettings", "ArchiverSink", "create_filtered_sink", "create_sink"]

logger = logging.getLogger(__name__)

TABLE_NAMES = {"archiver": "events", "archiver-filtered": "events_filtered"}
SOURCE_TOPICS = {"archiver": TOPIC_EVENTS_CLEAN, "archiver-filtered": TOPIC_EVENTS_FILTERED}


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """Storage location, commit triggers, maintenance and deduplication settings of the archiver."""

    root_uri: str
    storage_options: dict[str, str] = field(default_factory=dict)
    commit_seconds: float = 5.0
    commit_events: int = 100_000
    compact_every_seconds: float = 3600.0
    vacuum_retention_hours: float = 168.0
    dedup_window_seconds: float = 3600.0
    dedup_max_ids: int = 2_000_000

    def table_uri(self, table_name: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{table_name}"

    @classmethod
    def from_env(cls, env: Env) -> ArchiveSettings:
        root, options = _storage_from_env(env)
        return cls(
            root_uri=root,
            storage_options=options,
            commit_seconds=env.float("ARCHIVE_COMMIT_SECONDS", 5.0, minimum=0.01),
            commit_events=env.int("ARCHIVE_COMMIT_EVENTS", 100_000, minimum=1),
            compact_every_seconds=env.float("ARCHIVE_COMPACT_EVERY_SECONDS", 3600.0, minimum=0.0),
            vacuum_retention_hours=env.float("ARCHIVE_VACUUM_RETENTION_HOURS", 168.0, minimum=0.0),
            dedup_window_seconds=env.float("ARCHIVE_DEDUP_WINDOW_SECONDS", 3600.0, minimum=0.0),
            dedup_max_ids=env.int("ARCHIVE_DEDUP_MAX_IDS", 2_000_000, minimum=0),
        )


def _storage_from_env(env: Env) -> tuple[str, dict[str, str]]:
    uri = env.str("ARCHIVE_URI")
    if uri is not None and uri.startswith("s3://"):
        options = {"AWS_REGION": env.str("AWS_REGION", "us-east-1") or "us-east-1"}
        endpoint = env.str("S3_ENDPOINT_URL")
        if endpoint is not None:
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            value = env.str(name)
            if value is not None:
                options[name] = value
        # Conditional PUT (If-None-Match) makes concurrent commits safe without a lock table.
        options["AWS_CONDITIONAL_PUT"] = env.str("ARCHIVE_S3_CONDITIONAL_PUT", "etag") or "etag"
        return uri, options
    if uri is not None:
        if "://" in uri and not uri.startswith("file://"):
            raise ConfigError(
                "ARCHIVE_URI", f"expected a local path or an s3:// URL, got {uri[:50]!r}"
            )
        return uri, {}

    bucket = env.str("R2_BUCKET")
    if bucket is not None:
        account = env.str("R2_ACCOUNT_ID", required=True)
        return f"s3://{bucket}/delta", {
            "AWS_ENDPOINT_URL": f"https://{account}.r2.cloudflarestorage.com",
            "AWS_REGION": "auto",
            "AWS_ACCESS_KEY_ID": env.str("R2_ACCESS_KEY_ID", required=True) or "",
            "AWS_SECRET_ACCESS_KEY": env.str("R2_SECRET_ACCESS_KEY", required=True) or "",
            "AWS_CONDITIONAL_PUT": "etag",
        }
    return str(env.path("TRACKER_DATA_DIR", ".tracker") / "delta"), {}


class ArchiveGapError(SinkError):
    """The runtime offered offsets past what the table holds; restarting resumes from the table."""


@dataclass(slots=True)
class _Buffer:
    tables: dict[int, list[pa.Table]] = field(default_factory=dict)
    """Rows waiting for the next commit, per broker partition."""
    event_ids: set[str] = field(default_factory=set)
    offsets: dict[int, int] = field(default_factory=dict)
    """Last buffered broker offset per partition."""
    first_offsets: dict[int, int] = field(default_factory=dict)
    """First broker offset each partition's buffered rows cover."""
    rows: int = 0
    started: float = 0.0


class ArchiverSink(Sink):
    """Buffers events and appends them to a Delta table with their broker offsets."""

    # The extension parses the stored documents straight into Arrow columns.
    decode_events = False

    def __init__(
        self, name: str, source_topic: str, table_name: str, settings: ArchiveSettings
    ) -> None:
        self.name = name
        self.source_topic = source_topic
        self.settings = settings
        self.table = ArchiveTable(
            settings.table_uri(table_name), storage_options=settings.storage_options
        )
        self.recent = RecentEventIds(settings.dedup_window_seconds, settings.dedup_max_ids)
        self._buffer = _Buffer()
        self._stored: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._context: SinkContext | None = None

    async def open(self, context: SinkContext) -> None:
        self._context = context
        partitions = context.broker.partitions
        self._stored = await asyncio.to_thread(self.table.stored_offsets, self.name, partitions)
        since_ms = int((time.time() - self.settings.dedup_window_seconds) * 1000)
        recent_ids = await asyncio.to_thread(self.table.recent_event_ids, since_ms)
        self.recent.load(recent_ids.to_pylist())
        await self._rewind_broker(partitions)
        logger.info(
            "Archiver opened table.",
            extra={
                "consumer": self.name,
                "partitions_stored": len(self._stored),
                "recent_ids": len(self.recent),
            },
        )
        self._tasks.append(asyncio.create_task(self._flush_timer(), name=f"{self.name}-flush"))
        if self.settings.compact_every_seconds > 0:
            self._tasks.append(
                asyncio.create_task(self._maintenance_timer(), name=f"{self.name}-maintenance")
            )

    async def _rewind_broker(self, partitions: int) -> None:
        # The runtime resumes after the larger of the broker's and the table's offset, and
        # the broker may be ahead by up to one unflushed buffer: move it back to the table.
        assert self._context is not None
        broker = self._context.broker
        for partition in range(partitions):
            stored = self._stored.get(partition)
            committed = await broker.committed(self.source_topic, self.name, partition)
            if stored is not None and committed is not None and committed > stored:
                await broker.commit(self.source_topic, self.name, partition, stored)
                logger.warning(
                    "Moved broker offset back to the archived offset.",
                    extra={
                        "consumer": self.name,
                        "partition": partition,
                        "from": committed,
                        "to": stored,
                    },
                )

    async def stored_offsets(self) -> dict[int, int] | None:
        return dict(self._stored)

    async def process(self, batch: Batch) -> None:
        async with self._lock:
            expected = await self._expected_offset(batch.partition)
            if expected is not None and batch.first_offset > expected:
                await self._rewind_on_gap(batch.partition, expected)

            # NOTE: events before `expected` were buffered by an earlier call, so after a
            # failed flush the retried batch skips them and any dead letters they produced
            # in that call (the runtime clears them before a retry) are not routed again.
            start = _first_index_at(batch, expected)
            converted = documents_to_table(batch.raw[start:] if start else batch.raw)
            for position, reason in converted.rejected:
                batch.dead_letter(start + position, reason)

            event_ids = converted.table.column("event_id").to_pylist()
            keep = self.recent.take_new(event_ids, self._buffer.event_ids)
            rows = converted.table if all(keep) else converted.table.filter(pa.array(keep))
            first_for_partition = (
                batch.partition not in self._stored and batch.partition not in self._buffer.offsets
            )
            if rows.num_rows:
                if not self._buffer.tables:
                    self._buffer.started = time.monotonic()
                self._buffer.tables.setdefault(batch.partition, []).append(rows)
                self._buffer.rows += rows.num_rows
            self._buffer.first_offsets.setdefault(
                batch.partition, batch.first_offset if expected is None else expected
            )
            self._buffer.offsets[batch.partition] = batch.last_offset

            # A partition's first commit happens at once, so the broker is never ahead of
            # a partition the table has no offset for.
            if (
                first_for_partition
                or self._buffer.rows >= self.settings.commit_events
                or self._due()
            ):
                await self._flush()

    async def _expected_offset(self, partition: int) -> int | None:
        if partition in self._buffer.offsets:
            return self._buffer.offsets[partition] + 1
        if partition in self._stored:
            return self._stored[partition] + 1
        return None

    async def _rewind_on_gap(self, partition: int, expected: int) -> None:
        # Another member may have archived further since we read the table: check again.
        assert self._context is not None
        fresh = await asyncio.to_thread(
            self.table.stored_offsets, self.name, self._context.broker.partitions
        )
        self._stored.update(fresh)
        stored = fresh.get(partition)
        if partition not in self._buffer.offsets and stored is not None and stored + 1 >= expected:
            return
        await self._context.broker.commit(self.source_topic, self.name, partition, expected - 1)
        raise ArchiveGapError(
            f"partition {partition}: the next offset to archive is {expected}, but the runtime"
            " resumed later; the broker offset was moved back, restart the consumer"
        )

    def _due(self) -> bool:
        return (
            bool(self._buffer.tables)
            and time.monotonic() - self._buffer.started >= self.settings.commit_seconds
        )

    def _drop_partitions_archived_elsewhere(self, buffer: _Buffer) -> None:
        """Leave out of the commit the partitions another member archived meanwhile.

        After a rebalance the new owner of a partition resumes from the table's offset. If it
        committed at or past the first offset buffered here, this member's rows for that
        partition are already in the table (or will be, from the new owner), so writing them
        again would duplicate them. If the new owner commits between this check and the
        append, Delta rejects the append as a concurrent transaction and the retry drops them.
        """
        fresh = self.table.stored_offsets(self.name, max(buffer.offsets) + 1)
        for partition, first in list(buffer.first_offsets.items()):
            stored = fresh.get(partition)
            if stored is None or stored < first:
                continue
            dropped = sum(table.num_rows for table in buffer.tables.pop(partition, []))
            buffer.rows -= dropped
            del buffer.offsets[partition], buffer.first_offsets[partition]
            self._stored[partition] = stored
            logger.warning(
                "Another archiver stored this partition; leaving out its buffered rows.",
                extra={
                    "consumer": self.name,
                    "partition": partition,
                    "stored_offset": stored,
                    "buffered_from": first,
                    "rows": dropped,
                },
            )

    async def _flush(self) -> None:
        buffer = self._buffer
        if not buffer.offsets:
            return
        await asyncio.to_thread(self._drop_partitions_archived_elsewhere, buffer)
        if not buffer.offsets:
            self.recent.add(buffer.event_ids)
            self._buffer = _Buffer()
            return
        tables = [
            table for partition in sorted(buffer.tables) for table in buffer.tables[partition]
        ]
        rows = pa.concat_tables(tables) if tables else ARCHIVE_SCHEMA.empty_table()
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.table.append, rows, self.name, dict(buffer.offsets))
        except Exception as error:
            logger.warning(
                "Retrying after error.",
                extra={
                    "consumer": self.name,
                    "operation": "delta_append",
                    "rows": rows.num_rows,
                    "error": str(error)[:300],
                },
            )
            raise RetryableSinkError(
                f"Delta append of {rows.num_rows} rows failed: {error}"
            ) from error
        self._stored.update(buffer.offsets)
        self.recent.add(buffer.event_ids)
        self._buffer = _Buffer()
        logger.info(
            "Archived batch.",
            extra={
                "consumer": self.name,
                "rows": rows.num_rows,
                "partitions": sorted(buffer.offsets),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    async def flush(self) -> None:
        """Commit whatever is buffered now."""
        async with self._lock:
            await self._flush()

    async def _flush_timer(self) -> None:
        interval = min(self.settings.commit_seconds, 1.0)
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                if not self._due():
                    continue
                with contextlib.suppress(RetryableSinkError):
                    # Logged in _flush; the buffer stays and the next tick tries again.
                    await self._flush()

    async def _maintenance_timer(self) -> None:
        policy = MaintenancePolicy(vacuum_retention_hours=self.settings.vacuum_retention_hours)
        while True:
            await asyncio.sleep(self.settings.compact_every_seconds)
            await self.maintain(policy)

    async def maintain(self, policy: MaintenancePolicy | None = None) -> dict[str, Any]:
        """Compact recent partitions, checkpoint and vacuum, between appends."""
        policy = policy or MaintenancePolicy(
            vacuum_retention_hours=self.settings.vacuum_retention_hours
        )
        async with self._lock:
            try:
                return await asyncio.to_thread(run_maintenance, self.table, policy)
            except Exception as error:
                logger.error(
                    "Archive maintenance failed; retrying at the next interval.",
                    extra={"consumer": self.name, "error": str(error)[:300]},
                )
                return {}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        async with self._lock:
            try:
                await self._flush()
            except RetryableSinkError:
                # The broker offsets are moved back to the table at the next start.
                logger.error(
                    "Archiver closed with unflushed events.",
                    extra={"consumer": self.name, "rows": self._buffer.rows},
                )


def _first_index_at(batch: Batch, expected: int | None) -> int:
    """Return the index of the batch's first event at or after broker offset `expected`."""
    if expected is None or batch.first_offset >= expected:
        return 0
    if not batch.offsets:
        return 0 if batch.last_offset >= expected else len(batch.raw)
    # Offsets never decrease within a batch, so the events to skip are a prefix.
    return bisect.bisect_left(batch.offsets, expected)


def create_sink(env: Env) -> ArchiverSink:
    """Build the `archiver` sink: events-clean into `<root>/events`."""
    return ArchiverSink(
        "archiver",
        SOURCE_TOPICS["archiver"],
        TABLE_NAMES["archiver"],
        ArchiveSettings.from_env(env),
    )


def create_filtered_sink(env: Env) -> ArchiverSink:
    """Build the `archiver-filtered` sink: events-filtered into `<root>/events_filtered`."""
    settings = ArchiveSettings.from_env(env)
    return ArchiverSink(
        "archiver-filtered",
        SOURCE_TOPICS["archiver-filtered"],
        TABLE_NAMES["archiver-filtered"],
        settings,
    )
