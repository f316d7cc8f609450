"""Hot tier against a real PostgreSQL table: counts, pages and matches checked against Python."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.query.dataset import BASE_MS, SPAN_MS
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, StatsQuery


@pytest.fixture
async def hot(pg_dsn: str, hot_schema: str):
    tier = HotTier(pg_dsn, hot_schema, CursorCodec(b"k" * 32))
    yield tier
    await tier.close()


async def test_hot_stats_by_event_type(hot: HotTier, dataset: list[dict[str, Any]]) -> None:
    result = await hot.stats(StatsQuery(EventFilter("beta", BASE_MS, BASE_MS + SPAN_MS), ("event_type",)))

    in_range = [e for e in dataset if BASE_MS <= e["timestamp"] < BASE_MS + SPAN_MS]
    expected = Counter(e["event_type"] for e in in_range if e["params"]["key_prefix"] == "beta")
    assert result.tier == "hot"
    assert result.total == sum(expected.values())
    assert {row["event_type"]: row["count"] for row in result.rows} == dict(expected)


async def test_hot_events_pages_cover_all(hot: HotTier, dataset: list[dict[str, Any]]) -> None:
    event_filter = EventFilter("gamma", BASE_MS, BASE_MS + SPAN_MS)
    seen: list[str] = []
    cursor = None
    while True:
        page = await hot.events(EventsQuery(event_filter, limit=97, cursor=cursor))
        seen.extend(event["event_id"] for event in page.events)
        cursor = page.next_cursor
        if cursor is None:
            break

    expected = sorted(
        (e for e in dataset if e["params"]["key_prefix"] == "gamma" and e["timestamp"] < BASE_MS + SPAN_MS),
        key=lambda e: (e["timestamp"], e["event_id"]),
        reverse=True,
    )
    assert seen == [e["event_id"] for e in expected]
