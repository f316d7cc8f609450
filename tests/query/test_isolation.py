"""Tenant isolation and injection: no query reaches another tenant, and hostile text is plain data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.query import reference
from tests.query.dataset import BASE_MS, HOSTILE_KEYS, HOSTILE_VALUES, SPAN_MS
from tracker.errors import QueryError
from tracker.query.cold import ColdTier
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery
from tracker.query.warm import WarmTier

START, END = BASE_MS, BASE_MS + SPAN_MS


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_key_groups_as_data(
    hot: HotTier, warm: WarmTier, cold: ColdTier, dataset: list[dict[str, Any]], key: str
) -> None:
    query = StatsQuery(EventFilter("hostile", START, END), (f"param:{key}",))
    expected = reference.stats_rows(
        reference.select(dataset, "hostile", START, END), (f"param:{key}",), "UTC"
    )
    assert any(row[f"param:{key}"] is not None for row in expected)
    for tier in (hot, warm, cold):
        result = await tier.stats(query)
        assert result.rows == expected, tier.name


@pytest.mark.parametrize("value", HOSTILE_VALUES)
async def test_hostile_value_filters_as_data(
    hot: HotTier, warm: WarmTier, cold: ColdTier, dataset: list[dict[str, Any]], value: str
) -> None:
    for key in HOSTILE_KEYS[:4]:
        event_filter = EventFilter("hostile", START, END, params=((key, value),))
        expected = reference.select(dataset, "hostile", START, END, params=((key, value),))
        for tier in (hot, warm, cold):
            result = await tier.stats(
                StatsQuery(event_filter, ("param:k",) if tier is not warm else ())
            )
            assert result.total == len(expected), (tier.name, key)


async def test_hostile_tables_survive(hot: HotTier, dataset: list[dict[str, Any]]) -> None:
    # After every hostile query above and here, the table still contains all of the tenant's rows.
    key, value = "'; DROP TABLE events; --", "'; DROP TABLE events; --"
    await hot.stats(
        StatsQuery(EventFilter("hostile", START, END, params=((key, value),)), (f"param:{key}",))
    )
    result = await hot.stats(StatsQuery(EventFilter("hostile", START, END)))
    assert result.total == len(reference.select(dataset, "hostile", START, END))


@pytest.mark.parametrize("tenant", ["alpha", "beta", "gamma", "hostile", "nobody"])
async def test_tenant_sees_only_itself(
    hot: HotTier, warm: WarmTier, cold: ColdTier, dataset: list[dict[str, Any]], tenant: str
) -> None:
    query = StatsQuery(EventFilter(tenant, START, END), ("param:key_prefix",))
    count = len(reference.select(dataset, tenant, START, END))
    expected = [{"param:key_prefix": tenant, "count": count}] if count else []
    for tier in (hot, warm, cold):
        result = await tier.stats(query)
        assert result.rows == expected, tier.name

    for tier in (hot, cold):
        page = await tier.events(EventsQuery(EventFilter(tenant, START, END), limit=1000))
        assert {event["params"]["key_prefix"] for event in page.events} <= {tenant}


async def test_match_never_crosses_tenants(
    hot: HotTier, cold: ColdTier, dataset: list[dict[str, Any]]
) -> None:
    # Beta has postbacks whose click_id equals an alpha click's, one second later.
    triggers, results, pairs = reference.match(
        dataset, "beta", "click", "postback", "click_id", START, END, 86_400_000
    )
    alpha_ids = {e["event_id"] for e in dataset if e["params"]["key_prefix"] == "alpha"}
    for tier in (hot, cold):
        result = await tier.match(
            MatchQuery("beta", "click", "postback", "click_id", START, END, 86_400_000, 1000)
        )
        assert result.summary["triggers"] == triggers
        assert result.summary["matched"] == len(pairs)
        assert result.summary["results"] == results
        assert not {p["trigger_event"]["event_id"] for p in result.pairs} & alpha_ids


async def test_cursor_of_other_tenant_rejected(hot: HotTier, cold: ColdTier) -> None:
    page = await hot.events(EventsQuery(EventFilter("alpha", START, END), limit=5))
    assert page.next_cursor is not None
    for tier in (hot, cold):
        with pytest.raises(QueryError) as error:
            await tier.events(
                EventsQuery(EventFilter("beta", START, END), limit=5, cursor=page.next_cursor)
            )
        assert error.value.code == "invalid_cursor"
