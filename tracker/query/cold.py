"""Cold tier: full event history in the archiver's Delta table, queried with DataFusion.

The table is partitioned by `key_prefix` and `date` (the UTC day of the event,
YYYY-MM-DD) and has one column per event field, `params` being a map of
string to string. Each query opens only the files of the tenant's partitions
for the days it covers, and DataFusion streams and aggregates them, so no
table is loaded whole. User values enter plans only as `lit()` literals.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import datafusion
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from datafusion import Expr, SessionContext, col, lit
from datafusion import functions as F
from datafusion.expr import Window
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tracker.errors import QueryError
from tracker.query.cursor import CursorCodec
from tracker.query.matching import PAIRS_SCHEMA, listed_ids, match_events, pair_rows, summarize
from tracker.query.model import (
    EventFilter,
    EventsPage,
    EventsQuery,
    MatchQuery,
    MatchResult,
    StatsQuery,
    StatsResult,
    param_key_of,
)

__all__ = ["ColdTier"]

logger = logging.getLogger(__name__)

EVENT_FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
    "params",
)
DAY_MS = 86_400_000

T = TypeVar("T")


def _days(start_ms: int, end_ms: int) -> list[str]:
    """Return the UTC dates of [start_ms, end_ms), one day wider on each side.

    The margin keeps an event whose partition date was computed with a
    different rounding of the same instant, and costs at most two extra days.
    """
    first = datetime.datetime.fromtimestamp(
        start_ms // 1000, datetime.UTC
    ).date() - datetime.timedelta(days=1)
    last = datetime.datetime.fromtimestamp(
        (end_ms - 1) // 1000, datetime.UTC
    ).date() + datetime.timedelta(days=1)
    return [
        (first + datetime.timedelta(days=offset)).isoformat()
        for offset in range((last - first).days + 1)
    ]


def _event_dict(row: dict[str, Any]) -> dict[str, Any]:
    """Return one Arrow row as the wire event, with params as a dict."""
    event = {name: row[name] for name in EVENT_FIELDS}
    params = row["params"] or []
    event["params"] = dict(params) if isinstance(params, list) else dict(params.items())
    for name in EVENT_FIELDS[3:-1]:
        if event[name] is None:
            event[name] = ""
    return event


def _plain_local_parquet(table: DeltaTable) -> bool:
    """Return whether the table's active files alone hold its rows, on the local file system.

    Then DataFusion's own Parquet reader can scan them, which costs about half
    the CPU of a pyarrow dataset scan. Reader version 1 rules out column
    mapping and deletion vectors, which change what the files' rows mean.
    Object stores need credentials that only the pyarrow dataset path passes on.
    """
    protocol = table.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        return False
    return "://" not in table.table_uri or table.table_uri.startswith("file://")


def _file_schema(table: DeltaTable) -> pa.Schema:
    """Return the Arrow schema of the table's data files: the table schema without partition columns."""
    partition_columns = set(table.metadata().partition_columns)
    schema = pa.schema(table.schema().to_arrow())
    return pa.schema([field for field in schema if field.name not in partition_columns])


def _union_parquet(
    context: SessionContext, files: list[str], schema: pa.Schema
) -> datafusion.DataFrame:
    """Return one DataFrame over the Parquet files, read with the given schema."""
    frames = [context.read_parquet(path, schema=schema) for path in files]
    # Pairwise unions keep the plan's depth logarithmic in the number of files.
    while len(frames) > 1:
        merged = [left.union(right) for left, right in zip(frames[::2], frames[1::2], strict=False)]
        if len(frames) % 2:
            merged.append(frames[-1])
        frames = merged
    return frames[0]


class ColdTier:
    """Query engine for stats, event listings and matches over the Delta table of all events."""

    name = "cold"
    retention_ms = None

    def __init__(
        self,
        table_uri: str,
        cursor_codec: CursorCodec,
        *,
        storage_options: dict[str, str] | None = None,
        max_groups: int = 10_000,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._timeout = timeout_seconds
        self._uri = table_uri
        self._codec = cursor_codec
        self._storage_options = storage_options
        self._max_groups = max_groups

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking DataFusion call in a worker thread, bounded by the query timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(function, *args), self._timeout)
        except TimeoutError:
            # NOTE: the worker thread cannot be cancelled and finishes its scan in the background.
            raise QueryError(
                "query_timeout",
                "",
                f"the query ran longer than {self._timeout:g} s: narrow the time range",
            ) from None

    def _table(self) -> DeltaTable | None:
        """Open the newest table version; None before the archiver wrote anything."""
        try:
            return DeltaTable(self._uri, storage_options=self._storage_options)
        except TableNotFoundError:
            return None

    def _frame(self, table: DeltaTable, event_filter: EventFilter) -> datafusion.DataFrame | None:
        """Return the filtered events as a lazy DataFrame over the pruned partitions only."""
        partitions = [
            ("key_prefix", "=", event_filter.tenant),
            ("date", "in", _days(event_filter.start_ms, event_filter.end_ms)),
        ]
        context = SessionContext()
        predicate = (col("timestamp") >= lit(event_filter.start_ms)) & (
            col("timestamp") < lit(event_filter.end_ms)
        )
        if _plain_local_parquet(table):
            files = table.file_uris(file_pruning_predicate=partitions)
            if not files:
                return None
            frame = _union_parquet(context, files, _file_schema(table))
        else:
            dataset = table.to_pyarrow_dataset(file_pruning_predicate=partitions)
            if not dataset.files:
                # DataFusion rejects a plan over a dataset without fragments, and there is nothing to read.
                return None
            context.register_dataset("events", dataset)
            frame = context.table("events")
            predicate = predicate & (col("key_prefix") == lit(event_filter.tenant))

        if event_filter.event_types:
            predicate = predicate & F.in_list(
                col("event_type"), [lit(t) for t in event_filter.event_types]
            )
        for key, value in event_filter.params:
            predicate = predicate & (col("params")[key] == lit(value))
        return frame.filter(predicate)

    def _group_expression(self, key: str, tz: str) -> Expr:
        param_key = param_key_of(key)
        if param_key is not None:
            return col("params")[param_key]
        if key == "event_type":
            return col("event_type")
        local = F.arrow_cast(col("timestamp"), f'Timestamp(Millisecond, Some("{tz}"))')
        return F.to_char(local, lit("%Y-%m-%dT%H:00" if key == "hour" else "%Y-%m-%d"))

    async def freshness(self, tenant: str | None = None) -> int | None:
        """Return the newest event timestamp in the table, from the Delta file statistics."""
        return await self._in_thread(self._freshness_sync)

    def _freshness_sync(self) -> int | None:
        table = self._table()
        if table is None:
            return None
        actions = pa.table(table.get_add_actions(flatten=True))
        if "max.timestamp" not in actions.column_names or actions.num_rows == 0:
            return None
        return pc.max(actions["max.timestamp"]).as_py()

    async def stats(self, query: StatsQuery) -> StatsResult:
        return await self._in_thread(self._stats_sync, query)

    def _stats_sync(self, query: StatsQuery) -> StatsResult:
        started = time.perf_counter()
        table = self._table()
        rows: list[dict[str, Any]] = []
        total = 0
        truncated = False
        frame = self._frame(table, query.filter) if table is not None else None
        if frame is not None:
            names = [f"g{position}" for position in range(len(query.group_by))]
            groups = [
                self._group_expression(key, query.tz).alias(name)
                for key, name in zip(query.group_by, names, strict=True)
            ]
            aggregated = frame.aggregate(groups, [F.count(lit(1)).alias("count")])
            if groups:
                aggregated = aggregated.with_column("total", F.sum(col("count")).over(Window()))
                order = [col("count").sort(ascending=False)] + [
                    col(name).sort(ascending=True, nulls_first=False) for name in names
                ]
                aggregated = aggregated.sort(*order).limit(self._max_groups + 1)
            else:
                aggregated = aggregated.with_column("total", col("count"))
            try:
                result = aggregated.to_polars()
            except Exception as error:
                raise self._translate(error, query.tz) from error
            truncated = result.height > self._max_groups
            for record in result.head(self._max_groups).iter_rows(named=True):
                total = int(record["total"])
                if query.group_by:
                    row = {
                        key: record[name] for key, name in zip(query.group_by, names, strict=True)
                    }
                    row["count"] = int(record["count"])
                    rows.append(row)
        return StatsResult(
            total=total,
            rows=rows,
            tier=self.name,
            data_through_ms=self._freshness_sync(),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            truncated=truncated,
        )

    @staticmethod
    def _translate(error: Exception, tz: str) -> QueryError | Exception:
        """Map a DataFusion failure caused by user input to QueryError; keep others as they are."""
        message = str(error)
        if "timezone" in message.lower() or "time zone" in message.lower():
            return QueryError(
                "invalid_timezone",
                "tz",
                "time zone is not supported by the cold tier: use another IANA name or tier=hot",
            )
        logger.error("Cold query failed.", extra={"error": message[:200]})
        return error

    async def events(self, query: EventsQuery) -> EventsPage:
        return await self._in_thread(self._events_sync, query)

    def _events_sync(self, query: EventsQuery) -> EventsPage:
        table = self._table()
        events: list[dict[str, Any]] = []
        next_cursor = None
        if query.cursor is not None:
            after_ts, after_id = self._codec.decode(query.filter.tenant, query.cursor)
        frame = self._frame(table, query.filter) if table is not None else None
        if frame is not None:
            if query.cursor is not None:
                frame = frame.filter(
                    (col("timestamp") < lit(after_ts))
                    | ((col("timestamp") == lit(after_ts)) & (col("event_id") < lit(after_id)))
                )
            frame = frame.sort(
                col("timestamp").sort(ascending=False), col("event_id").sort(ascending=False)
            )
            records = frame.select(*[col(name) for name in EVENT_FIELDS]).limit(query.limit + 1)
            rows = records.to_arrow_table().to_pylist()
            events = [_event_dict(row) for row in rows[: query.limit]]
            if len(rows) > query.limit:
                last = events[-1]
                next_cursor = self._codec.encode(
                    query.filter.tenant, last["timestamp"], last["event_id"]
                )
        return EventsPage(events, next_cursor, self.name, self._freshness_sync())

    async def match(self, query: MatchQuery) -> MatchResult:
        return await self._in_thread(self._match_sync, query)

    def _match_sync(self, query: MatchQuery) -> MatchResult:
        started = time.perf_counter()
        table = self._table()
        triggers, results, pairs = 0, 0, pl.DataFrame(schema=PAIRS_SCHEMA)
        by_id: dict[str, dict[str, Any]] = {}
        frame = self._frame(table, query.as_filter()) if table is not None else None
        if frame is not None:
            on_value = col("params")[query.on]
            candidates = frame.filter(on_value.is_not_null()).select(
                on_value.alias("on"),
                col("timestamp"),
                col("event_id"),
                (col("event_type") == lit(query.trigger)).alias("is_trigger"),
            )
            triggers, results, pairs = match_events(
                pl.from_arrow(candidates.to_arrow_table()), query.window_ms
            )

            ids = listed_ids(pairs, query.limit)
            if ids:
                # The listed pairs are the earliest, so scanning only their time span
                # prunes most partitions instead of reading the whole range again.
                listed = pairs.head(query.limit)
                first_ms = int(listed["trigger_ts"].min())
                last_ms = int(listed["result_ts"].max())
                around = EventFilter(
                    query.tenant, first_ms, last_ms + 1, (query.trigger, query.result)
                )
                lookup = self._frame(table, around)
                assert lookup is not None
                chosen = lookup.filter(
                    F.in_list(col("event_id"), [lit(event_id) for event_id in ids])
                )
                rows = (
                    chosen.select(*[col(name) for name in EVENT_FIELDS])
                    .to_arrow_table()
                    .to_pylist()
                )
                by_id = {row["event_id"]: _event_dict(row) for row in rows}
        return MatchResult(
            pairs=pair_rows(pairs, query.limit, by_id),
            summary=summarize(triggers, results, pairs),
            tier=self.name,
            data_through_ms=self._freshness_sync(),
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
