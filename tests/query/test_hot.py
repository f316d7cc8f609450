"""Hot tier specifics: statement timeout, pages stable under inserts, and the other column types."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import orjson
import pytest

from tests.query import reference
from tests.query.dataset import BASE_MS, SPAN_MS, generate, make_event
from tracker.errors import QueryError
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.model import EventFilter, EventsQuery, MatchQuery, StatsQuery

CODEC = CursorCodec(b"h" * 32)


async def _load(dsn: str, schema: str, events: list[dict[str, Any]], ddl: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(ddl.format(schema=schema))
        await connection.executemany(
            f'INSERT INTO "{schema}".events VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)',
            [_row(event) for event in events],
        )
    finally:
        await connection.close()


def _row(event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        event["event_id"],
        event["event_type"],
        event["timestamp"],
        *(
            event[name]
            for name in (
                "ip",
                "user_agent",
                "referer",
                "accept_language",
                "request_path",
                "request_host",
            )
        ),
        orjson.dumps(event["params"]).decode(),
    )


TYPED_TABLE = """
CREATE TABLE "{schema}".events (
    event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, "timestamp" timestamptz NOT NULL,
    ip text, user_agent text, referer text, accept_language text, request_path text, request_host text,
    params jsonb NOT NULL, key_prefix text GENERATED ALWAYS AS (params ->> 'key_prefix') STORED
);
"""


async def test_hot_timeout_is_query_error(pg_dsn: str, loaded_schema: str) -> None:
    tier = HotTier(pg_dsn, loaded_schema, CODEC, timeout_seconds=0.2)
    try:
        with pytest.raises(QueryError) as error:
            # pg_sleep simulates a slow scan; no user input can reach this SQL.
            await tier._fetch("SELECT pg_sleep(2)", [])
        assert error.value.code == "query_timeout"
    finally:
        await tier.close()


async def test_hot_terminated_connection_is_unavailable(pg_dsn: str, loaded_schema: str) -> None:
    # A server restart ends running queries with "terminating connection due to
    # administrator command". pg_terminate_backend does the same to one session.
    sql = "SELECT pg_sleep(5) AS terminated_by_test"
    tier = HotTier(pg_dsn, loaded_schema, CODEC, timeout_seconds=10)
    admin = await asyncpg.connect(pg_dsn)
    try:
        running = asyncio.create_task(tier._fetch(sql, []))
        backends: list[asyncpg.Record] = []
        for _ in range(200):
            backends = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'active'", sql
            )
            if backends:
                break
            await asyncio.sleep(0.05)
        assert backends
        await admin.execute("SELECT pg_terminate_backend($1)", backends[0]["pid"])

        with pytest.raises(QueryError) as error:
            await running
        assert error.value.code == "tier_unavailable"
    finally:
        await admin.close()
        await tier.close()


async def test_hot_missing_table_is_query_error(pg_dsn: str, pg_schema: str) -> None:
    tier = HotTier(pg_dsn, pg_schema, CODEC)
    try:
        with pytest.raises(QueryError) as error:
            await tier.stats(StatsQuery(EventFilter("alpha", BASE_MS, BASE_MS + SPAN_MS)))
        assert error.value.code == "tier_unavailable"
    finally:
        await tier.close()


async def test_hot_pages_stable_under_inserts(pg_dsn: str, pg_schema: str) -> None:
    events = [e for e in generate(seed=11, count=600) if e["params"]["key_prefix"] == "alpha"]
    await _load(
        pg_dsn,
        pg_schema,
        events,
        TYPED_TABLE.replace("uuid", "text").replace("timestamptz", "bigint"),
    )
    tier = HotTier(pg_dsn, pg_schema, CODEC)
    rng = random.Random(2)
    event_filter = EventFilter("alpha", BASE_MS, BASE_MS + 2 * SPAN_MS)
    seen: list[str] = []
    cursor = None
    connection = await asyncpg.connect(pg_dsn)
    try:
        while True:
            page = await tier.events(EventsQuery(event_filter, limit=50, cursor=cursor))
            seen.extend(event["event_id"] for event in page.events)
            # Newer events arrive between pages; they sort before the cursor and never shift it.
            newer = make_event("alpha", "click", BASE_MS + SPAN_MS + rng.randrange(1000), {}, rng)
            await connection.execute(
                f'INSERT INTO "{pg_schema}".events VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)',
                *_row(newer),
            )
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        await connection.close()
        await tier.close()
    expected = sorted(events, key=lambda e: (e["timestamp"], e["event_id"]), reverse=True)
    assert seen == [e["event_id"] for e in expected]


async def test_hot_typed_columns_match_reference(pg_dsn: str, pg_schema: str) -> None:
    events = generate(seed=4, count=500)
    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.execute(TYPED_TABLE.format(schema=pg_schema))
        await connection.executemany(
            f'INSERT INTO "{pg_schema}".events (event_id, event_type, "timestamp", ip, user_agent, referer, '
            f"accept_language, request_path, request_host, params) "
            f"VALUES ($1::uuid, $2, to_timestamp($3 / 1000.0), $4, $5, $6, $7, $8, $9, $10::jsonb)",
            [_row(event) for event in events],
        )
    finally:
        await connection.close()

    tier = HotTier(pg_dsn, pg_schema, CODEC)
    try:
        start, end = BASE_MS, BASE_MS + SPAN_MS
        chosen = reference.select(events, "beta", start, end)
        result = await tier.stats(
            StatsQuery(EventFilter("beta", start, end), ("day", "param:sub1"), "Europe/Paris")
        )
        assert result.total == len(chosen)
        assert result.rows == reference.stats_rows(chosen, ("day", "param:sub1"), "Europe/Paris")

        pages: list[str] = []
        cursor = None
        while True:
            page = await tier.events(
                EventsQuery(EventFilter("beta", start, end), limit=40, cursor=cursor)
            )
            pages.extend(event["event_id"] for event in page.events)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == [
            e["event_id"]
            for e in sorted(chosen, key=lambda e: (e["timestamp"], e["event_id"]), reverse=True)
        ]

        _, _, pairs = reference.match(
            events, "beta", "click", "postback", "click_id", start, end, 86_400_000
        )
        match = await tier.match(
            MatchQuery("beta", "click", "postback", "click_id", start, end, 86_400_000, 1000)
        )
        assert match.summary["matched"] == len(pairs)
    finally:
        await tier.close()
