"""A small deterministic event set for the query tests, and loaders into each tier's store."""

from __future__ import annotations

import random
import uuid
from typing import Any

import asyncpg
import orjson

# 2026-11-20T00:00:00Z: the data spans the ten days from here.
BASE_MS = 1_795_132_800_000
SPAN_MS = 10 * 86_400_000

HOSTILE_KEYS = (
    "it's",
    "a.b",
    "$.x",
    "%",
    "'; DROP TABLE events; --",
    "ключ",
    "a[0]",
    "{}",
    "a\\b",
    "key_prefix2",
)
HOSTILE_VALUES = (
    "it's",
    "100%",
    "'; DROP TABLE events; --",
    "$.a[0]",
    '{"x": 1}',
    "naïve ☃",
    "a\\b",
    "_",
)


def make_event(
    tenant: str, event_type: str, timestamp: int, params: dict[str, str], rng: random.Random
) -> dict[str, Any]:
    """Return one event in wire form with a UUIDv7-shaped id that sorts by timestamp."""
    event_id = uuid.UUID(int=(timestamp << 80) | (0x7 << 76) | (rng.getrandbits(62)) | (0b10 << 62))
    return {
        "event_id": str(event_id),
        "event_type": event_type,
        "timestamp": timestamp,
        "ip": "203.0.113.0",
        "user_agent": "test-agent",
        "referer": "",
        "accept_language": "en",
        "request_path": "/p",
        "request_host": "tracker.test",
        "params": {"key_prefix": tenant, **params},
    }


def generate(seed: int = 7, count: int = 3000) -> list[dict[str, Any]]:
    """Return events of three tenants with clicks, postbacks sharing `click_id`, and hostile values."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        tenant = ("alpha", "beta", "gamma")[index % 3]
        timestamp = BASE_MS + rng.randrange(SPAN_MS)
        event_type = rng.choice(("click", "click", "impression", "pageview"))
        params = {"sub1": rng.choice(("google", "bing", "mail", *HOSTILE_VALUES))}
        if rng.random() < 0.7:
            params["campaign"] = f"c{rng.randrange(5)}"
        click_id = f"k{index}"
        if event_type == "click":
            params["click_id"] = click_id
        events.append(make_event(tenant, event_type, timestamp, params, rng))
        if event_type == "click" and rng.random() < 0.5:
            # Postbacks land from the same millisecond up to two days later, a few twice.
            delay = rng.choice((0, 1, 1000, 3_600_000, 2 * 86_400_000, rng.randrange(86_400_000)))
            for _ in range(rng.choice((1, 1, 1, 2))):
                events.append(
                    make_event(tenant, "postback", timestamp + delay, {"click_id": click_id}, rng)
                )
                delay += rng.randrange(60_000)
    # Hostile keys and values, which every tier must treat as plain data.
    for index in range(300):
        key = HOSTILE_KEYS[index % len(HOSTILE_KEYS)]
        value = HOSTILE_VALUES[index % len(HOSTILE_VALUES)]
        timestamp = BASE_MS + rng.randrange(SPAN_MS)
        events.append(
            make_event("hostile", "click", timestamp, {key: value, "k": str(index % 3)}, rng)
        )
    # Results in another tenant that share an alpha trigger's key value must never match it.
    for event in [
        e for e in events if e["params"]["key_prefix"] == "alpha" and e["event_type"] == "click"
    ][:40]:
        params = {"click_id": event["params"]["click_id"]}
        events.append(make_event("beta", "postback", event["timestamp"] + 1000, params, rng))
    # Triggers sharing one key value exercise the each-result-once rule.
    for step in range(20):
        params = {"click_id": "shared"}
        events.append(
            make_event(
                "alpha",
                "click" if step % 2 == 0 else "postback",
                BASE_MS + step * 7_000,
                params,
                rng,
            )
        )
    return events


HOT_TABLE = """
CREATE TABLE "{schema}".events (
    event_id text NOT NULL UNIQUE,
    event_type text NOT NULL,
    "timestamp" bigint NOT NULL,
    ip text NOT NULL,
    user_agent text NOT NULL,
    referer text NOT NULL,
    accept_language text NOT NULL,
    request_path text NOT NULL,
    request_host text NOT NULL,
    params jsonb NOT NULL
);
CREATE INDEX ON "{schema}".events ("timestamp");
CREATE INDEX ON "{schema}".events USING gin (params jsonb_path_ops);
"""


async def load_hot(dsn: str, schema: str, events: list[dict[str, Any]]) -> None:
    """Create the hot writer's table in `schema` and copy the events into it."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(HOT_TABLE.format(schema=schema))
        records = [
            (
                event["event_id"],
                event["event_type"],
                event["timestamp"],
                event["ip"],
                event["user_agent"],
                event["referer"],
                event["accept_language"],
                event["request_path"],
                event["request_host"],
                orjson.dumps(event["params"]).decode(),
            )
            for event in events
        ]
        await connection.copy_records_to_table("events", schema_name=schema, records=records)
    finally:
        await connection.close()


def load_cold(table_uri: str, events: list[dict[str, Any]]) -> None:
    """Write the events as the archiver does: a Delta table partitioned by key_prefix and UTC date."""
    import datetime

    import pyarrow as pa
    from deltalake import write_deltalake

    columns: dict[str, list[Any]] = {
        name: [event[name] for event in events] for name in EVENT_FIELDS
    }
    columns["params"] = [list(event["params"].items()) for event in events]
    columns["key_prefix"] = [event["params"]["key_prefix"] for event in events]
    columns["date"] = [
        datetime.datetime.fromtimestamp(event["timestamp"] / 1000, datetime.UTC).date().isoformat()
        for event in events
    ]
    schema = pa.schema(
        [(name, pa.string()) for name in EVENT_FIELDS[:2]]
        + [("timestamp", pa.int64())]
        + [(name, pa.string()) for name in EVENT_FIELDS[3:-1]]
        + [
            ("params", pa.map_(pa.string(), pa.string())),
            ("key_prefix", pa.string()),
            ("date", pa.string()),
        ]
    )
    write_deltalake(
        table_uri,
        pa.table(columns, schema=schema),
        partition_by=["key_prefix", "date"],
        mode="append",
    )


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


async def feed_warm(warm_dir: Any, events: list[dict[str, Any]], batch_size: int = 700) -> None:
    """Run the events through the real warm aggregator in batches, each repeating a few ids."""
    from pathlib import Path

    from tracker.consumers.runtime import Batch
    from tracker.consumers.warm_aggregator import WarmAggregator, WarmAggregatorSettings

    settings = WarmAggregatorSettings(
        Path(warm_dir), retention_days=30, dedup_hours=24 * 30, compact_every_batches=3
    )
    aggregator = WarmAggregator(settings)
    await aggregator.open()
    try:
        for offset, start in enumerate(range(0, len(events), batch_size)):
            chunk = events[start : start + batch_size]
            # Redelivered ids, as the at-least-once topic may hold, must not count twice.
            await aggregator.process(Batch(offset % 2, offset, offset, chunk + chunk[:5], []))
    finally:
        await aggregator.close()
