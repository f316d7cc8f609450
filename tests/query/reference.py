"""Plain-Python results of the query model, written from docs/analytics.md, to check every tier against."""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections import Counter
from typing import Any


def select(
    events: list[dict[str, Any]], tenant: str, start_ms: int, end_ms: int, event_types=(), params=()
) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if event["params"]["key_prefix"] == tenant
        and start_ms <= event["timestamp"] < end_ms
        and (not event_types or event["event_type"] in event_types)
        and all(event["params"].get(key) == value for key, value in params)
    ]


def group_value(event: dict[str, Any], key: str, tz: str) -> str | None:
    if key == "event_type":
        return event["event_type"]
    if key.startswith("param:"):
        return event["params"].get(key[len("param:") :])
    local = datetime.datetime.fromtimestamp(event["timestamp"] / 1000, zoneinfo.ZoneInfo(tz))
    return local.strftime("%Y-%m-%dT%H:00" if key == "hour" else "%Y-%m-%d")


def stats_rows(
    events: list[dict[str, Any]], group_by: tuple[str, ...], tz: str
) -> list[dict[str, Any]]:
    """Rows sorted by count descending, then group values ascending by UTF-8 bytes, nulls last."""
    if not group_by:
        return []
    counter = Counter(tuple(group_value(event, key, tz) for key in group_by) for event in events)

    def order(item: tuple[tuple[str | None, ...], int]) -> tuple[Any, ...]:
        values, count = item
        return (-count, *[(value is None, (value or "").encode()) for value in values])

    return [
        dict(zip(group_by, values, strict=True), count=count)
        for values, count in sorted(counter.items(), key=order)
    ]


def match(
    events: list[dict[str, Any]],
    tenant: str,
    trigger: str,
    result: str,
    on: str,
    start_ms: int,
    end_ms: int,
    window_ms: int,
):
    """Return (triggers, results, pairs as (trigger id, result id, delta)) by the documented rule, quadratically."""
    chosen = [
        e for e in select(events, tenant, start_ms, end_ms, (trigger, result)) if on in e["params"]
    ]
    triggers = sorted(
        (e for e in chosen if e["event_type"] == trigger),
        key=lambda e: (e["timestamp"], e["event_id"]),
    )
    results = [e for e in chosen if e["event_type"] == result]
    used: set[str] = set()
    pairs = []
    for event in triggers:
        candidates = [
            r
            for r in results
            if r["params"][on] == event["params"][on]
            and r["event_id"] not in used
            and 0 <= r["timestamp"] - event["timestamp"] <= window_ms
        ]
        if candidates:
            first = min(candidates, key=lambda r: (r["timestamp"], r["event_id"]))
            used.add(first["event_id"])
            pairs.append(
                (event["event_id"], first["event_id"], first["timestamp"] - event["timestamp"])
            )
    return len(triggers), len(results), pairs


def nearest_rank(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]
