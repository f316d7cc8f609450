"""Router: tier choice by plan, explicit tier, hot retention, fallback from warm to cold."""

from __future__ import annotations

from typing import Any

import pytest

from tests.query.conftest import NOW_MS, fixed_clock
from tests.query.dataset import BASE_MS, SPAN_MS
from tracker.errors import QueryError
from tracker.query.cold import ColdTier
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery
from tracker.query.router import Router
from tracker.query.warm import WarmTier

DAY_MS = 86_400_000
PLANS = {"alpha": "free", "beta": "pro"}


def plan_of(tenant: str) -> str:
    return PLANS.get(tenant, "free")


async def plan_of_async(tenant: str) -> str:
    return plan_of(tenant)


def old_stats(tenant: str, group_by: tuple[str, ...] = ("event_type",)) -> StatsQuery:
    # Starts ten days before "now": outside the seven-day hot retention.
    return StatsQuery(EventFilter(tenant, NOW_MS - 10 * DAY_MS, NOW_MS), group_by)


@pytest.mark.parametrize("lookup", [plan_of, plan_of_async])
async def test_router_picks_tier_by_plan(
    hot: HotTier, warm: WarmTier, cold: ColdTier, lookup: Any
) -> None:
    router = Router(hot, warm, cold, lookup, clock=fixed_clock)
    assert (await router.stats(old_stats("alpha"))).tier == "warm"
    assert (await router.stats(old_stats("beta"))).tier == "cold"


async def test_router_prefers_hot_when_recent(hot: HotTier, warm: WarmTier, cold: ColdTier) -> None:
    router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
    recent = StatsQuery(EventFilter("beta", NOW_MS - 2 * DAY_MS, NOW_MS))
    assert (await router.stats(recent)).tier == "hot"
    without_hot = Router(None, warm, cold, plan_of, clock=fixed_clock)
    assert (await without_hot.stats(recent)).tier == "cold"


async def test_router_honours_explicit_tier(hot: HotTier, warm: WarmTier, cold: ColdTier) -> None:
    router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
    answers = {}
    for tier in ("hot", "warm", "cold"):
        result = await router.stats(old_stats("beta"), tier=tier)
        assert result.tier == tier
        answers[tier] = result.rows
    assert answers["hot"] == answers["warm"] == answers["cold"]


async def test_router_falls_back_warm_to_cold(hot: HotTier, warm: WarmTier, cold: ColdTier) -> None:
    router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
    # Two param keys: warm rejects the query, so a free tenant gets the result from cold.
    result = await router.stats(old_stats("alpha", ("param:sub1", "param:campaign")))
    assert result.tier == "cold"
    page = await router.events(
        EventsQuery(EventFilter("alpha", NOW_MS - 10 * DAY_MS, NOW_MS), limit=3)
    )
    assert page.tier == "cold"
    match = await router.match(
        MatchQuery("alpha", "click", "postback", "click_id", NOW_MS - 10 * DAY_MS, NOW_MS)
    )
    assert match.tier == "cold"


async def test_router_explicit_warm_keeps_refusal(
    hot: HotTier, warm: WarmTier, cold: ColdTier
) -> None:
    router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
    with pytest.raises(QueryError) as error:
        await router.stats(old_stats("alpha", ("param:sub1", "param:campaign")), tier="warm")
    assert error.value.code == "unsupported_query"
    assert "one param key" in str(error.value)


async def test_router_rejects_unknown_tier(warm: WarmTier, cold: ColdTier) -> None:
    router = Router(None, warm, cold, plan_of, clock=fixed_clock)
    with pytest.raises(QueryError) as error:
        await router.stats(old_stats("alpha"), tier="lukewarm")
    assert error.value.code == "invalid_tier"
    with pytest.raises(QueryError) as error:
        await router.stats(old_stats("alpha"), tier="hot")
    assert error.value.code == "tier_unavailable"


async def test_router_rejects_long_window(warm: WarmTier, cold: ColdTier) -> None:
    router = Router(None, warm, cold, plan_of, max_query_hours=24, clock=fixed_clock)
    with pytest.raises(QueryError) as error:
        await router.stats(old_stats("beta"))
    assert error.value.code == "window_too_long"


async def test_warm_rejects_beyond_retention(warm: WarmTier) -> None:
    query = StatsQuery(EventFilter("alpha", NOW_MS - 31 * DAY_MS, NOW_MS))
    with pytest.raises(QueryError) as error:
        await warm.stats(query)
    assert error.value.code == "unsupported_query"
    assert error.value.field == "start_ms"


@pytest.mark.parametrize(
    ("start", "end", "tz", "field"),
    [
        (BASE_MS + 1, BASE_MS + SPAN_MS, "UTC", "start_ms"),
        (BASE_MS, BASE_MS + SPAN_MS - 1, "UTC", "end_ms"),
        (BASE_MS, BASE_MS + SPAN_MS, "Asia/Kolkata", "tz"),
    ],
)
async def test_warm_rejects_inexact_shapes(
    warm: WarmTier, start: int, end: int, tz: str, field: str
) -> None:
    with pytest.raises(QueryError) as error:
        await warm.stats(StatsQuery(EventFilter("alpha", start, end), ("hour",), tz))
    assert error.value.code == "unsupported_query"
    assert error.value.field == field


async def test_non_hour_zone_equal_hot_cold(hot: HotTier, cold: ColdTier) -> None:
    query = StatsQuery(
        EventFilter("alpha", BASE_MS, BASE_MS + SPAN_MS), ("hour", "day"), "Asia/Kolkata"
    )
    hot_result, cold_result = await hot.stats(query), await cold.stats(query)
    assert hot_result.rows == cold_result.rows
    assert hot_result.rows[0]["hour"].endswith(":00")


async def test_cold_timeout_is_query_error(cold_uri: str, codec: Any) -> None:
    tier = ColdTier(cold_uri, codec, timeout_seconds=0.001)
    with pytest.raises(QueryError) as error:
        await tier.stats(
            StatsQuery(EventFilter("alpha", BASE_MS, BASE_MS + SPAN_MS), ("param:sub1", "hour"))
        )
    assert error.value.code == "query_timeout"


async def test_router_falls_back_from_hot(
    pg_dsn: str, pg_schema: str, warm: WarmTier, cold: ColdTier, codec: Any
) -> None:
    from tests.conftest import free_port

    recent = StatsQuery(EventFilter("beta", NOW_MS - 2 * DAY_MS, NOW_MS), ("event_type",))
    # A schema without the events table, then a port where nothing listens: both fall back.
    for hot in (
        HotTier(pg_dsn, pg_schema, codec),
        HotTier(
            f"postgresql://postgres@127.0.0.1:{free_port()}/test",
            "public",
            codec,
            timeout_seconds=2,
        ),
    ):
        router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
        try:
            assert (await router.stats(recent)).tier == "cold"
            with pytest.raises(QueryError) as error:
                await router.stats(recent, tier="hot")
            assert error.value.code == "tier_unavailable"
        finally:
            await router.close()


async def test_router_concurrent_queries_agree(
    hot: HotTier, warm: WarmTier, cold: ColdTier
) -> None:
    import asyncio

    router = Router(hot, warm, cold, plan_of, clock=fixed_clock)
    queries = [
        old_stats(tenant, group_by)
        for tenant in ("alpha", "beta")
        for group_by in [("event_type",), ("day",), ("param:sub1",)]
    ]
    sequential = [await router.stats(query, tier="cold") for query in queries]
    # The same queries at once on every tier: shared pools and threads must not mix answers.
    together = await asyncio.gather(
        *[router.stats(query, tier=tier) for tier in ("hot", "warm", "cold") for query in queries]
    )
    for position, result in enumerate(together):
        assert result.rows == sequential[position % len(queries)].rows
