"""Warm tier: stats from the warm aggregator's hourly rollups, read with Polars.

The rollups hold counts per (tenant, UTC hour, event_type) and per (tenant,
hour, event_type, param key, param value), for the last WARM_RETENTION_DAYS.
That answers most dashboard questions exactly. Whatever it cannot answer
exactly raises QueryError with code `unsupported_query`, and the router then
tries cold: event listings, match, windows that do not start and end on a UTC
hour or reach past retention, more than one param key per query (as filters,
group keys or both), and time zones whose offset is not a whole hour.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from tracker._core import now_ms
from tracker.errors import QueryError
from tracker.query.model import (
    EventsPage,
    EventsQuery,
    MatchQuery,
    MatchResult,
    StatsQuery,
    StatsResult,
    param_key_of,
)
from tracker.query.warm_store import HOUR_MS, Manifest, WarmStore

__all__ = ["WarmTier"]

DAY_MS = 24 * HOUR_MS
# Compaction may delete files between reading the manifest and the files, so a
# query starts over from a fresh manifest this many times before it gives up.
READ_ATTEMPTS = 3


def _unsupported(field: str, reason: str) -> QueryError:
    return QueryError(
        "unsupported_query",
        field,
        f"the warm tier cannot compute this query exactly: {reason}. Use tier=cold",
    )


class WarmTier:
    """Query engine for stats over hourly rollups. It rejects every other kind of query."""

    name = "warm"

    def __init__(
        self,
        warm_dir: Path,
        *,
        retention_days: int = 30,
        max_groups: int = 10_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = WarmStore(warm_dir)
        self.retention_ms = retention_days * DAY_MS
        self._max_groups = max_groups
        self._clock = clock

    async def freshness(self, tenant: str | None = None) -> int | None:
        """Return the newest event timestamp the rollups include."""
        return self._store.read_manifest().data_through_ms

    async def events(self, query: EventsQuery) -> EventsPage:
        raise _unsupported("", "it keeps counts, not events")

    async def match(self, query: MatchQuery) -> MatchResult:
        raise _unsupported("", "it keeps counts, not events")

    def _check(self, query: StatsQuery) -> str | None:
        """Raise QueryError for queries the rollups cannot count exactly; return the param key used, if any."""
        event_filter = query.filter
        for name, value in (("start_ms", event_filter.start_ms), ("end_ms", event_filter.end_ms)):
            if value % HOUR_MS:
                raise _unsupported(name, f"{name} must fall on a whole UTC hour")
        if event_filter.start_ms < self._clock() - self.retention_ms:
            raise _unsupported(
                "start_ms", f"it keeps only the last {self.retention_ms // DAY_MS} days"
            )

        keys = {key for key, _ in event_filter.params}
        keys |= {param_key_of(group) for group in query.group_by if param_key_of(group) is not None}
        if len(event_filter.params) > 1 or len(keys) > 1:
            raise _unsupported("group_by", "it counts one param key at a time")
        return next(iter(keys), None)

    async def stats(self, query: StatsQuery) -> StatsResult:
        param_key = self._check(query)
        return await asyncio.to_thread(self._stats_sync, query, param_key)

    def _stats_sync(self, query: StatsQuery, param_key: str | None) -> StatsResult:
        started = time.perf_counter()
        for attempt in range(READ_ATTEMPTS):
            manifest = self._store.read_manifest()
            try:
                frame = self._source(manifest, query, param_key).collect()
                break
            except FileNotFoundError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        total = int(frame["count"].sum()) if frame.height else 0
        rows, truncated = self._group(frame, query)
        return StatsResult(
            total=total,
            rows=rows,
            tier=self.name,
            data_through_ms=manifest.data_through_ms,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            truncated=truncated,
        )

    def _source(self, manifest: Manifest, query: StatsQuery, param_key: str | None) -> pl.LazyFrame:
        """Return (hour, event_type, value, count) rows of the tenant's window; value is the param's."""
        event_filter = query.filter
        in_window = (
            (pl.col("tenant") == event_filter.tenant)
            & (pl.col("hour") >= event_filter.start_ms)
            & (pl.col("hour") < event_filter.end_ms)
        )
        if event_filter.event_types:
            in_window = in_window & pl.col("event_type").is_in(list(event_filter.event_types))
        counts = self._store.scan(manifest, "counts").filter(in_window)
        if param_key is None:
            return counts.select(
                "hour", "event_type", pl.lit(None, pl.String).alias("value"), "count"
            )

        params = self._store.scan(manifest, "params").filter(
            in_window & (pl.col("key") == param_key)
        )
        if event_filter.params:
            value = event_filter.params[0][1]
            return params.filter(pl.col("value") == value).select(
                "hour", "event_type", "value", "count"
            )

        # Events without the key are the ones the per-value counts leave out.
        with_key = params.group_by("hour", "event_type").agg(
            pl.col("count").sum().alias("with_key")
        )
        missing = (
            counts.group_by("hour", "event_type")
            .agg(pl.col("count").sum())
            .join(with_key, on=["hour", "event_type"], how="left")
            .select(
                "hour",
                "event_type",
                pl.lit(None, pl.String).alias("value"),
                (pl.col("count") - pl.col("with_key").fill_null(0)).alias("count"),
            )
            .filter(pl.col("count") > 0)
        )
        return pl.concat([params.select("hour", "event_type", "value", "count"), missing])

    def _labels(self, hours: list[int], tz: str) -> pl.DataFrame:
        """Return the local hour and day label of each UTC hour; reject non-whole-hour offsets."""
        zone = zoneinfo.ZoneInfo(tz)
        hour_labels, day_labels = [], []
        for hour in hours:
            local = datetime.datetime.fromtimestamp(hour / 1000, zone)
            offset = local.utcoffset()
            if offset is not None and offset.total_seconds() % 3600:
                raise _unsupported("tz", f"{tz} is not a whole number of hours from UTC")
            hour_labels.append(local.strftime("%Y-%m-%dT%H:00"))
            day_labels.append(local.strftime("%Y-%m-%d"))
        return pl.DataFrame(
            {"hour": hours, "hour_label": hour_labels, "day_label": day_labels},
            schema={"hour": pl.Int64, "hour_label": pl.String, "day_label": pl.String},
        )

    def _group(self, frame: pl.DataFrame, query: StatsQuery) -> tuple[list[dict[str, Any]], bool]:
        if not query.group_by:
            return [], False
        if frame.height == 0:
            return [], False
        frame = frame.join(
            self._labels(frame["hour"].unique().to_list(), query.tz), on="hour", how="left"
        )

        columns = {"event_type": "event_type", "hour": "hour_label", "day": "day_label"}
        names = [f"g{position}" for position in range(len(query.group_by))]
        groups = [
            pl.col(columns.get(key, "value")).alias(name)
            for key, name in zip(query.group_by, names, strict=True)
        ]
        grouped = frame.group_by(groups).agg(pl.col("count").sum())
        grouped = grouped.sort(
            ["count", *names], descending=[True] + [False] * len(names), nulls_last=True
        ).head(self._max_groups + 1)

        rows = []
        for record in grouped.head(self._max_groups).iter_rows(named=True):
            row = {key: record[name] for key, name in zip(query.group_by, names, strict=True)}
            row["count"] = int(record["count"])
            rows.append(row)
        return rows, grouped.height > self._max_groups
