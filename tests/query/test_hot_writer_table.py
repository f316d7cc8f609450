"""Hot tier over the table the real hot writer creates and fills: results equal the reference."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.query import reference
from tests.query.dataset import BASE_MS, SPAN_MS
from tracker.consumers.hot_writer import HotWriter, HotWriterSettings
from tracker.consumers.runtime import Batch
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery

START, END = BASE_MS, BASE_MS + SPAN_MS


@pytest.fixture
async def written(pg_dsn: str, pg_schema: str, dataset: list[dict[str, Any]]) -> str:
    """Write the dataset through the hot writer, with retention long enough to keep its dates."""
    writer = HotWriter(HotWriterSettings(dsn=pg_dsn, schema=pg_schema, retention_days=3650))
    await writer.open(None)  # type: ignore[arg-type]
    try:
        for offset, start in enumerate(range(0, len(dataset), 1000)):
            chunk = dataset[start : start + 1000]
            await writer.process(
                Batch(0, offset, offset, chunk, [orjson.dumps(event) for event in chunk])
            )
    finally:
        await writer.close()
    return pg_schema


async def test_hot_reads_writer_table(
    pg_dsn: str, written: str, dataset: list[dict[str, Any]]
) -> None:
    tier = HotTier(pg_dsn, written, CursorCodec(b"w" * 32))
    try:
        for group_by, tz in [
            (("event_type", "param:sub1"), "UTC"),
            (("day", "hour"), "America/New_York"),
        ]:
            query = StatsQuery(EventFilter("alpha", START, END), group_by, tz)
            chosen = reference.select(dataset, "alpha", START, END)
            result = await tier.stats(query)
            assert result.total == len(chosen)
            assert result.rows == reference.stats_rows(chosen, group_by, tz)
            # Freshness walks the writer's (key_prefix, timestamp) index tenant by tenant.
            assert result.data_through_ms == max(event["timestamp"] for event in dataset)

        seen: list[str] = []
        cursor = None
        while True:
            page = await tier.events(
                EventsQuery(EventFilter("beta", START, END), limit=200, cursor=cursor)
            )
            seen.extend(event["event_id"] for event in page.events)
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = sorted(
            reference.select(dataset, "beta", START, END),
            key=lambda e: (e["timestamp"], e["event_id"]),
            reverse=True,
        )
        assert seen == [e["event_id"] for e in expected]

        _, _, pairs = reference.match(
            dataset, "alpha", "click", "postback", "click_id", START, END, 86_400_000
        )
        match = await tier.match(
            MatchQuery("alpha", "click", "postback", "click_id", START, END, 86_400_000, 20)
        )
        assert match.summary["matched"] == len(pairs)
        listed = [
            (p["trigger_event"]["event_id"], p["result_event"]["event_id"]) for p in match.pairs
        ]
        assert listed == [(trigger, result) for trigger, result, _ in pairs[:20]]
    finally:
        await tier.close()
