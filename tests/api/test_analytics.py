"""Tests of /api/events, /api/events/stats and /api/events/match on seeded hot and cold tiers.

Events of two tenants are written into a private PostgreSQL schema (the hot
writer's table) and a Delta table in the archiver's layout, with the loaders of
the query tests, and a real `tracker api` serves them. Tenant B's events carry
param values naming tenant A, so a filter or group-by that leaked across
tenants would show up in the counts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import ApiServer, TenantKeys, assert_error, create_tenant
from tests.query.dataset import HOSTILE_VALUES, load_cold, load_hot, make_event

TENANT_A = "anla"
TENANT_B = "anlb"
HOUR_MS = 3_600_000


def _generate(now_ms: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    events = []
    for index in range(400):
        tenant = TENANT_A if index % 2 == 0 else TENANT_B
        timestamp = now_ms - rng.randrange(20 * HOUR_MS)
        event_type = rng.choice(("click", "click", "impression"))
        params = {"sub1": rng.choice(("google", "bing", *HOSTILE_VALUES)), "click_id": f"k{index}"}
        if tenant == TENANT_B:
            # Values that name the other tenant must stay data, never a scope.
            params["owner"] = TENANT_A
        events.append(make_event(tenant, event_type, timestamp, params, rng))
        if event_type == "click" and index % 3 == 0:
            events.append(
                make_event(tenant, "postback", timestamp + 1000, {"click_id": f"k{index}"}, rng)
            )
    return events


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory, pg_dsn: str
) -> Iterator[tuple[ApiServer, list[dict[str, Any]], int]]:
    """A running API whose hot and cold tiers hold the same events of two tenants."""
    now_ms = int(time.time() * 1000)
    events = _generate(now_ms)
    schema = f"api_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(pg_dsn, f'CREATE SCHEMA "{schema}"'))
    asyncio.run(load_hot(pg_dsn, schema, events))
    data_dir = tmp_path_factory.mktemp("analytics")
    load_cold(str(data_dir / "delta" / "events"), events)
    server = ApiServer(
        data_dir,
        {"HOT_DSN": pg_dsn, "HOT_SCHEMA": schema, "QUERY_CURSOR_KEY": "ab" * 32},
    ).start()
    try:
        yield server, events, now_ms
    finally:
        server.stop()
        asyncio.run(_execute(pg_dsn, f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="module")
def tenants(seeded: tuple[ApiServer, list[dict[str, Any]], int]) -> dict[str, TenantKeys]:
    server = seeded[0]
    return {
        TENANT_A: create_tenant(server, TENANT_A, plan="pro"),
        TENANT_B: create_tenant(server, TENANT_B),
    }


def _range(now_ms: int) -> dict[str, int]:
    return {"from": now_ms - 24 * HOUR_MS, "to": now_ms + HOUR_MS}


def _of(events: list[dict[str, Any]], tenant: str) -> list[dict[str, Any]]:
    return [event for event in events if event["params"]["key_prefix"] == tenant]


@pytest.mark.parametrize("tier", ["hot", "cold"])
def test_stats_counts_match_reference(seeded, tenants, tier: str) -> None:
    server, events, now_ms = seeded
    expected = Counter(event["event_type"] for event in _of(events, TENANT_A))
    with server.client(tenants[TENANT_A].read_key) as reader:
        answer = reader.get(
            "/api/events/stats", params={**_range(now_ms), "group_by": "event_type", "tier": tier}
        )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tier"] == tier
    assert body["total"] == sum(expected.values())
    assert {row["event_type"]: row["count"] for row in body["rows"]} == dict(expected)
    assert "data_through" in body
    assert "data_through_ms" in body


def test_stats_default_tier_answers_with_freshness(seeded, tenants) -> None:
    server, events, _ = seeded
    with server.client(tenants[TENANT_A].read_key) as reader:
        body = reader.get("/api/events/stats", params={"hours": 24}).json()

    assert body["tier"] == "hot"
    assert body["total"] == len(_of(events, TENANT_A))
    assert body["data_through_ms"] >= max(event["timestamp"] for event in events) - 1
    assert body["data_through"].endswith("Z")


def test_param_filter_pairs_by_position(seeded, tenants) -> None:
    server, events, now_ms = seeded
    expected = [
        event
        for event in _of(events, TENANT_A)
        if event["params"].get("sub1") == "'; DROP TABLE events; --"
        and event["event_type"] == "click"
    ]
    query = [
        ("param_key", "sub1"),
        ("param_value", "'; DROP TABLE events; --"),
        ("event_type", "click"),
        *_range(now_ms).items(),
    ]
    with server.client(tenants[TENANT_A].read_key) as reader:
        paired = reader.get("/api/events/stats", params=query).json()
        dotted = reader.get(
            "/api/events/stats",
            params={
                "param.sub1": "'; DROP TABLE events; --",
                "event_type": "click",
                **_range(now_ms),
            },
        ).json()

    assert paired["total"] == len(expected)
    assert dotted["total"] == len(expected)


@pytest.mark.parametrize("hostile", HOSTILE_VALUES)
def test_hostile_param_values_are_data(seeded, tenants, hostile: str) -> None:
    server, events, now_ms = seeded
    expected = sum(1 for event in _of(events, TENANT_B) if event["params"].get("sub1") == hostile)
    with server.client(tenants[TENANT_B].read_key) as reader:
        body = reader.get(
            "/api/events/stats", params={"param.sub1": hostile, **_range(now_ms)}
        ).json()

    assert body["total"] == expected


@pytest.mark.parametrize(
    "query",
    [
        {"param_key": "key_prefix", "param_value": TENANT_A},
        {"param.key_prefix": TENANT_A},
        {"param.owner": TENANT_A, "param_key": "key_prefix", "param_value": TENANT_A},
    ],
)
def test_filters_never_reach_other_tenant(seeded, tenants, query: dict[str, str]) -> None:
    server, _, now_ms = seeded
    with server.client(tenants[TENANT_B].read_key) as reader:
        stats = reader.get("/api/events/stats", params={**query, **_range(now_ms)}).json()
        listed = reader.get("/api/events", params={**query, **_range(now_ms)}).json()

    assert stats["total"] == 0
    assert listed["events"] == []


def test_group_by_never_reaches_other_tenant(seeded, tenants) -> None:
    server, events, now_ms = seeded
    with server.client(tenants[TENANT_B].read_key) as reader:
        body = reader.get(
            "/api/events/stats",
            params={"group_by": "param:key_prefix,param:owner", **_range(now_ms)},
        ).json()

    prefixes = {row["param:key_prefix"] for row in body["rows"]}
    assert prefixes == {TENANT_B}
    assert body["total"] == len(_of(events, TENANT_B))


def test_group_by_missing_key_gives_null_group(seeded, tenants) -> None:
    server, events, now_ms = seeded
    with server.client(tenants[TENANT_A].read_key) as reader:
        body = reader.get(
            "/api/events/stats", params={"group_by": "param:owner", **_range(now_ms)}
        ).json()

    assert body["rows"] == [{"param:owner": None, "count": len(_of(events, TENANT_A))}]


def test_event_pages_cover_tenant_exactly_once(seeded, tenants) -> None:
    server, events, now_ms = seeded
    seen: list[str] = []
    cursor = None
    with server.client(tenants[TENANT_A].read_key) as reader:
        for _ in range(100):
            params: dict[str, Any] = {"limit": 37, **_range(now_ms)}
            if cursor:
                params["cursor"] = cursor
            page = reader.get("/api/events", params=params).json()
            seen.extend(event["event_id"] for event in page["events"])
            assert all(event["params"]["key_prefix"] == TENANT_A for event in page["events"])
            cursor = page["next_cursor"]
            if cursor is None:
                break

    assert len(seen) == len(set(seen))
    assert set(seen) == {event["event_id"] for event in _of(events, TENANT_A)}


def test_cursor_of_other_tenant_is_rejected(seeded, tenants) -> None:
    server, _, now_ms = seeded
    with server.client(tenants[TENANT_A].read_key) as reader:
        cursor = reader.get("/api/events", params={"limit": 5, **_range(now_ms)}).json()[
            "next_cursor"
        ]
    assert cursor

    with server.client(tenants[TENANT_B].read_key) as other:
        for tier in ("hot", "cold"):
            answer = other.get(
                "/api/events", params={"cursor": cursor, "tier": tier, **_range(now_ms)}
            )
            assert_error(answer, 400, "invalid_cursor", "cursor")


@pytest.mark.parametrize("cursor", ["garbage", "a.b", "x" * 2000, "%00"])
def test_malformed_cursor_is_rejected(seeded, tenants, cursor: str) -> None:
    server, _, now_ms = seeded
    with server.client(tenants[TENANT_A].read_key) as reader:
        answer = reader.get("/api/events", params={"cursor": cursor, **_range(now_ms)})

    assert_error(answer, 400, "invalid_cursor", "cursor")


def test_match_pairs_only_own_events(seeded, tenants) -> None:
    server, events, now_ms = seeded
    own = _of(events, TENANT_B)
    expected_pairs = sum(1 for event in own if event["event_type"] == "postback")
    with server.client(tenants[TENANT_B].read_key) as reader:
        answer = reader.get(
            "/api/events/match",
            params={
                "trigger": "click",
                "result": "postback",
                "on": "click_id",
                "window": "1h",
                **_range(now_ms),
            },
        )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["summary"]["matched"] == expected_pairs
    assert body["match_rate"] == body["summary"]["match_rate"]
    assert body["tier"] in ("hot", "cold")
    for pair in body["pairs"]:
        assert pair["trigger_event"]["params"]["key_prefix"] == TENANT_B
        assert pair["result_event"]["params"]["key_prefix"] == TENANT_B


@pytest.mark.parametrize(
    ("path", "query", "code", "field"),
    [
        ("/api/events/stats", {"hours": "0"}, "out_of_range", "hours"),
        ("/api/events/stats", {"hours": str(10**9)}, "out_of_range", "hours"),
        ("/api/events/stats", {"from": "tomorrow"}, "invalid_time", "from"),
        ("/api/events/stats", {"from": "2026-01-02", "to": "2026-01-01"}, "invalid_range", "to"),
        (
            "/api/events/stats",
            {"from": "1970-01-01", "to": "2026-01-01"},
            "range_too_large",
            "from",
        ),
        ("/api/events/stats", {"param_key": "a"}, "unpaired_param_filter", "param_value"),
        ("/api/events/stats", {"param.sub1": "v" * 3000}, "invalid_param", "param_value"),
        ("/api/events/stats", {"group_by": "param:"}, "invalid_group_by", "group_by"),
        ("/api/events/stats", {"group_by": "colour"}, "invalid_group_by", "group_by"),
        ("/api/events/stats", {"group_by": "hour,hour"}, "invalid_group_by", "group_by"),
        ("/api/events/stats", {"tz": "Mars/Olympus"}, "invalid_timezone", "tz"),
        ("/api/events/stats", {"tier": "lukewarm"}, "invalid_tier", "tier"),
        ("/api/events/stats", {"event_type": "no spaces"}, "invalid_event_type", "event_type"),
        ("/api/events/stats", {"secret_tenant": TENANT_A}, "unknown_parameter", "secret_tenant"),
        ("/api/events/stats", {"tenant": TENANT_A}, "unknown_parameter", "tenant"),
        ("/api/events", {"limit": "0"}, "out_of_range", "limit"),
        ("/api/events", {"limit": "100000"}, "out_of_range", "limit"),
        ("/api/events", {"group_by": "hour"}, "unknown_parameter", "group_by"),
        (
            "/api/events/match",
            {"result": "postback", "on": "click_id"},
            "missing_parameter",
            "trigger",
        ),
        (
            "/api/events/match",
            {"trigger": "click", "result": "click", "on": "click_id"},
            "invalid_match",
            "result",
        ),
        (
            "/api/events/match",
            {"trigger": "click", "result": "postback", "on": "x", "window": "1w"},
            "invalid_window",
            "window",
        ),
        (
            "/api/events/match",
            {"trigger": "click", "result": "postback", "on": "x", "window": "9999d"},
            "invalid_window",
            "window",
        ),
    ],
)
def test_bad_analytics_input_is_rejected(
    seeded, tenants, path: str, query: dict[str, str], code: str, field: str
) -> None:
    server = seeded[0]
    with server.client(tenants[TENANT_A].read_key) as reader:
        answer = reader.get(path, params=query)

    assert_error(answer, 400, code, field)


def test_analytics_needs_tenant_key(seeded, tenants) -> None:
    server = seeded[0]
    with server.client() as admin:
        answer = admin.get("/api/events/stats")

    assert_error(answer, 403, "forbidden", "authorization")


def test_concurrent_queries_stay_per_tenant(seeded, tenants) -> None:
    server, events, now_ms = seeded
    expected = {tenant: len(_of(events, tenant)) for tenant in (TENANT_A, TENANT_B)}

    def total(job: tuple[str, str]) -> tuple[str, int]:
        tenant, tier = job
        with server.client(tenants[tenant].read_key) as reader:
            body = reader.get("/api/events/stats", params={**_range(now_ms), "tier": tier}).json()
        return tenant, body["total"]

    jobs = [(tenant, tier) for tier in ("hot", "cold") for tenant in (TENANT_A, TENANT_B)] * 2
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(total, jobs))

    assert len(results) == len(jobs)
    for tenant, count in results:
        assert count == expected[tenant], tenant


def test_day_buckets_follow_time_zone(seeded, tenants) -> None:
    server, events, now_ms = seeded
    with server.client(tenants[TENANT_A].read_key) as reader:
        body = reader.get(
            "/api/events/stats", params={**_range(now_ms), "group_by": "day", "tz": "Asia/Tokyo"}
        ).json()

    assert body["tz"] == "Asia/Tokyo"
    assert sum(row["count"] for row in body["rows"]) == len(_of(events, TENANT_A))
    assert all(len(row["day"]) == 10 for row in body["rows"])
