"""Tier parity: one dataset in hot, warm and cold gives the same numbers, equal to a Python reference."""

from __future__ import annotations

from typing import Any

import pytest

from tests.query import reference
from tests.query.dataset import BASE_MS, SPAN_MS
from tracker.errors import QueryError
from tracker.query.cold import ColdTier
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery
from tracker.query.warm import WarmTier

HOUR_MS = 3_600_000
GROUPINGS = [
    (),
    ("event_type",),
    ("param:sub1",),
    ("param:campaign", "event_type"),
    ("hour",),
    ("day",),
    ("event_type", "param:sub1", "day"),
    ("param:click_id",),
]
ZONES = ["UTC", "Europe/Paris", "America/New_York"]
FILTERS = [
    dict(),
    dict(event_types=("click", "postback")),
    dict(params=(("sub1", "'; DROP TABLE events; --"),)),
    dict(params=(("campaign", "c2"),), event_types=("click",)),
]


def _compatible(group_by: tuple[str, ...], filters: dict[str, Any]) -> bool:
    """Return whether warm supports the query: at most one param key across filters and group keys."""
    keys = {key for key, _ in filters.get("params", ())}
    keys |= {key[len("param:") :] for key in group_by if key.startswith("param:")}
    return len(keys) <= 1


# Time zones change only hour and day labels, so the other groupings run in UTC alone.
CASES = [
    (group_by, tz)
    for group_by in GROUPINGS
    for tz in (ZONES if {"hour", "day"} & set(group_by) else ["UTC"])
]


@pytest.mark.parametrize(
    ("group_by", "tz"), CASES, ids=[f"{','.join(g) or 'none'}-{tz}" for g, tz in CASES]
)
async def test_stats_equal_across_tiers(
    hot: HotTier,
    warm: WarmTier,
    cold: ColdTier,
    dataset: list[dict[str, Any]],
    group_by: tuple[str, ...],
    tz: str,
) -> None:
    # Starts 26 hours in so that the window is hour-aligned but not day-aligned.
    start, end = BASE_MS + 26 * HOUR_MS, BASE_MS + SPAN_MS
    for filters in FILTERS:
        query = StatsQuery(EventFilter("alpha", start, end, **filters), group_by, tz)
        chosen = reference.select(dataset, "alpha", start, end, **filters)
        expected_rows = reference.stats_rows(chosen, group_by, tz)

        for tier in (hot, cold, warm):
            if tier is warm and not _compatible(group_by, filters):
                with pytest.raises(QueryError) as refused:
                    await tier.stats(query)
                assert refused.value.code == "unsupported_query"
                continue
            result = await tier.stats(query)
            assert result.tier == tier.name
            assert result.total == len(chosen), (tier.name, filters)
            assert result.rows == expected_rows, (tier.name, filters)


async def test_stats_data_through_reported(
    hot: HotTier, warm: WarmTier, cold: ColdTier, dataset: list[dict[str, Any]]
) -> None:
    newest = max(event["timestamp"] for event in dataset)
    query = StatsQuery(EventFilter("beta", BASE_MS, BASE_MS + SPAN_MS))
    for tier in (hot, warm, cold):
        result = await tier.stats(query)
        assert result.data_through_ms == newest, tier.name


@pytest.mark.parametrize("window_ms", [0, 1000, 86_400_000, 3 * 86_400_000])
async def test_match_equal_across_tiers(
    hot: HotTier, warm: WarmTier, cold: ColdTier, dataset: list[dict[str, Any]], window_ms: int
) -> None:
    start, end = BASE_MS, BASE_MS + SPAN_MS
    query = MatchQuery("alpha", "click", "postback", "click_id", start, end, window_ms, limit=50)
    triggers, results, pairs = reference.match(
        dataset, "alpha", "click", "postback", "click_id", start, end, window_ms
    )
    assert pairs, "the dataset must produce matches for this test to mean anything"

    for tier in (hot, cold):
        result = await tier.match(query)
        assert result.tier == tier.name
        assert result.summary["triggers"] == triggers
        assert result.summary["results"] == results
        assert result.summary["matched"] == len(pairs)
        assert result.summary["match_rate"] == len(pairs) / triggers
        deltas = [delta for _, _, delta in pairs]
        assert result.summary["time_delta_ms"]["p50"] == reference.nearest_rank(deltas, 50)
        assert result.summary["time_delta_ms"]["p99"] == reference.nearest_rank(deltas, 99)
        assert result.summary["time_delta_ms"]["min"] == min(deltas)
        assert result.summary["time_delta_ms"]["max"] == max(deltas)
        listed = [
            (p["trigger_event"]["event_id"], p["result_event"]["event_id"], p["time_delta_ms"])
            for p in result.pairs
        ]
        assert listed == pairs[:50]

    with pytest.raises(QueryError) as refused:
        await warm.match(query)
    assert refused.value.code == "unsupported_query"


async def test_match_uses_each_result_once(hot: HotTier, cold: ColdTier) -> None:
    # The dataset has ten triggers and ten results alternating 7 s apart on click_id "shared".
    query = MatchQuery(
        "alpha", "click", "postback", "click_id", BASE_MS, BASE_MS + 200_000, 60_000, limit=100
    )
    for tier in (hot, cold):
        result = await tier.match(query)
        shared = [p for p in result.pairs if p["trigger_event"]["params"]["click_id"] == "shared"]
        assert len(shared) == 10
        assert {p["time_delta_ms"] for p in shared} == {7000}
        assert len({p["result_event"]["event_id"] for p in shared}) == 10


async def test_events_pages_equal_hot_cold(
    hot: HotTier, cold: ColdTier, dataset: list[dict[str, Any]]
) -> None:
    event_filter = EventFilter(
        "gamma", BASE_MS, BASE_MS + SPAN_MS, event_types=("click", "pageview")
    )
    expected = sorted(
        reference.select(dataset, "gamma", BASE_MS, BASE_MS + SPAN_MS, ("click", "pageview")),
        key=lambda e: (e["timestamp"], e["event_id"]),
        reverse=True,
    )
    for first, second in ((hot, cold), (cold, hot)):
        seen: list[dict[str, Any]] = []
        cursor = None
        # Pages alternate between the tiers: a cursor from one continues on the other.
        for page_number in range(1000):
            tier = first if page_number % 2 == 0 else second
            page = await tier.events(EventsQuery(event_filter, limit=113, cursor=cursor))
            assert page.tier == tier.name
            seen.extend(page.events)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == expected


async def test_warm_rejects_event_listing(warm: WarmTier) -> None:
    with pytest.raises(QueryError) as refused:
        await warm.events(EventsQuery(EventFilter("alpha", BASE_MS, BASE_MS + SPAN_MS)))
    assert refused.value.code == "unsupported_query"
