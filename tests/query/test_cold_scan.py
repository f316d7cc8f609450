"""Cold tier scans: DataFusion's Parquet reader and the pyarrow dataset path return the same results."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from tests.query.dataset import BASE_MS, SPAN_MS
from tracker.query import cold as cold_module
from tracker.query.cold import ColdTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery

START, END = BASE_MS, BASE_MS + SPAN_MS


def test_cold_test_table_uses_parquet_reader(cold_uri: str) -> None:
    assert cold_module._plain_local_parquet(DeltaTable(cold_uri))


async def test_cold_scan_paths_agree(cold: ColdTier, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = StatsQuery(
        EventFilter("alpha", START + 3_600_000, END, ("click", "postback"), (("campaign", "c1"),)),
        ("param:sub1", "event_type"),
    )
    events = EventsQuery(EventFilter("beta", START, END), limit=50)
    match = MatchQuery("alpha", "click", "postback", "click_id", START, END, 86_400_000, 10)

    native = (await cold.stats(stats), await cold.events(events), await cold.match(match))
    monkeypatch.setattr(cold_module, "_plain_local_parquet", lambda table: False)
    dataset = (await cold.stats(stats), await cold.events(events), await cold.match(match))

    assert native[0].total > 0
    assert native[0].rows == dataset[0].rows
    assert native[0].total == dataset[0].total
    assert len(native[1].events) == 50
    assert native[1].events == dataset[1].events
    assert native[1].next_cursor == dataset[1].next_cursor
    assert native[2].summary["matched"] > 0
    assert native[2].summary == dataset[2].summary
    assert native[2].pairs == dataset[2].pairs


async def test_cold_unknown_tenant_is_empty(cold: ColdTier) -> None:
    result = await cold.stats(StatsQuery(EventFilter("nobody", START, END), ("param:sub1",)))
    assert result.total == 0
    assert result.rows == []
