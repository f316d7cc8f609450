"""Analytics over the caller's tenant: event listings, counts with group-by, and trigger/result matching.

The tenant always comes from the API key, never from a parameter, and param
keys and values are passed to the query model as data. Every response names
the tier that produced it and that tier's freshness (`data_through`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tracker._core import now_ms
from tracker.api.errors import ApiError
from tracker.api.params import (
    PARAM_PREFIX,
    QueryArgs,
    parse_group_by,
    parse_param_filters,
    parse_time_range,
    parse_window,
)
from tracker.api.routing import Context, Param, Reply, Route
from tracker.errors import QueryError
from tracker.query import model

__all__ = ["ROUTES", "iso_ms"]

TIERS = ("hot", "warm", "cold")
DEFAULT_WINDOW_MS = 86_400_000
DEFAULT_MAX_QUERY_HOURS = 24 * 366


def iso_ms(value: int | None) -> str | None:
    """Format Unix milliseconds as ISO 8601 in UTC with a Z suffix."""
    if value is None:
        return None
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _freshness(tier: str, data_through_ms: int | None) -> dict[str, Any]:
    return {
        "tier": tier,
        "data_through": iso_ms(data_through_ms),
        "data_through_ms": data_through_ms,
    }


def _tier(args: QueryArgs) -> str | None:
    tier = args.one("tier")
    if tier is not None and tier not in TIERS:
        raise ApiError("invalid_tier", "tier", f"tier must be one of {', '.join(TIERS)}")
    return tier


def _router(context: Context) -> Any:
    router = context.services.query_router
    if router is None:
        raise ApiError(
            "tier_unavailable", "tier", "no analytics tier is configured on this API server"
        )
    return router


async def _ask(method: Any, query: Any, tier: str | None) -> Any:
    """Run one router call; a tier the caller named but this server lacks is a 422."""
    try:
        return await method(query, tier)
    except QueryError as error:
        if tier is not None and error.code == "tier_unavailable":
            raise ApiError("tier_unavailable", "tier", str(error), status=422) from error
        raise


def _max_hours(context: Context) -> int:
    settings = context.services.query_settings
    return settings.max_query_hours if settings is not None else DEFAULT_MAX_QUERY_HOURS


def _filter(context: Context) -> model.EventFilter:
    start_ms, end_ms = parse_time_range(
        context.args, now_ms=now_ms(), max_hours=_max_hours(context)
    )
    return model.EventFilter(
        tenant=context.tenant,
        start_ms=start_ms,
        end_ms=end_ms,
        event_types=tuple(context.args.all("event_type")),
        params=parse_param_filters(context.args),
    )


def _range(event_filter: model.EventFilter) -> dict[str, Any]:
    return {"from": iso_ms(event_filter.start_ms), "to": iso_ms(event_filter.end_ms)}


async def list_events(context: Context) -> Reply:
    tier = _tier(context.args)
    query = model.EventsQuery(
        filter=_filter(context),
        limit=context.args.integer("limit", 100, minimum=1, maximum=model.MAX_EVENTS_LIMIT),
        cursor=context.args.one("cursor"),
    )
    page = await _ask(_router(context).events, query, tier)
    return 200, {
        "events": page.events,
        "next_cursor": page.next_cursor,
        **_range(query.filter),
        **_freshness(page.tier, page.data_through_ms),
    }


async def event_stats(context: Context) -> Reply:
    tier = _tier(context.args)
    query = model.StatsQuery(
        filter=_filter(context),
        group_by=parse_group_by(context.args.one("group_by")),
        tz=context.args.one("tz") or "UTC",
    )
    result = await _ask(_router(context).stats, query, tier)
    return 200, {
        "total": result.total,
        "rows": result.rows,
        "truncated": result.truncated,
        "group_by": list(query.group_by),
        "tz": query.tz,
        **_range(query.filter),
        **_freshness(result.tier, result.data_through_ms),
    }


async def match_events(context: Context) -> Reply:
    tier = _tier(context.args)
    args = context.args
    for name in ("trigger", "result", "on"):
        if args.one(name) is None:
            raise ApiError("missing_parameter", name, f"{name} is required")
    start_ms, end_ms = parse_time_range(args, now_ms=now_ms(), max_hours=_max_hours(context))
    window_ms = parse_window(args.one("window"), DEFAULT_WINDOW_MS)
    if window_ms > model.MAX_WINDOW_MS:
        raise ApiError(
            "invalid_window",
            "window",
            f"window must be at most {model.MAX_WINDOW_MS // 86_400_000}d",
        )
    query = model.MatchQuery(
        tenant=context.tenant,
        trigger=args.one("trigger") or "",
        result=args.one("result") or "",
        on=args.one("on") or "",
        start_ms=start_ms,
        end_ms=end_ms,
        window_ms=window_ms,
        limit=args.integer("limit", 100, minimum=0, maximum=model.MAX_MATCH_LIMIT),
    )
    result = await _ask(_router(context).match, query, tier)
    return 200, {
        "pairs": result.pairs,
        "summary": result.summary,
        "match_rate": result.summary.get("match_rate", 0.0),
        "window_ms": window_ms,
        "from": iso_ms(start_ms),
        "to": iso_ms(end_ms),
        **_freshness(result.tier, result.data_through_ms),
    }


_TIME = {
    "type": "string",
    "description": "ISO 8601 (UTC without offset) or Unix milliseconds",
    "maxLength": 40,
}
RANGE_PARAMS = (
    Param(
        "hours",
        {"type": "integer", "minimum": 1},
        "Look back this many hours from now (default 24); at most MAX_QUERY_HOURS. Excludes from/to.",
    ),
    Param("from", _TIME, "Start of the range, inclusive."),
    Param("to", _TIME, "End of the range, exclusive (default now)."),
    Param(
        "tier",
        {"type": "string", "enum": list(TIERS)},
        "Ask this tier instead of the one the plan picks.",
    ),
)
FILTER_PARAMS = (
    Param(
        "event_type",
        {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "Only these event types (repeatable).",
        repeated=True,
    ),
    Param(
        "param_key",
        {"type": "string", "minLength": 1, "maxLength": model.MAX_PARAM_KEY_LEN},
        "Param filter key; the n-th pairs with the n-th param_value (repeatable).",
        repeated=True,
    ),
    Param(
        "param_value",
        {"type": "string", "maxLength": model.MAX_PARAM_VALUE_LEN},
        "Param filter value for the n-th param_key (repeatable).",
        repeated=True,
    ),
)
PARAM_FILTER_NOTE = " A filter can also be written param.<key>=<value>; every filter must match."
FRESHNESS = {
    "tier": {"type": "string", "enum": list(TIERS)},
    "data_through": {
        "type": ["string", "null"],
        "description": "ISO 8601 of the newest data the tier holds",
    },
    "data_through_ms": {"type": ["integer", "null"]},
    "from": {"type": "string"},
    "to": {"type": "string"},
}

ROUTES = [
    Route(
        "GET",
        "/api/events",
        list_events,
        "read",
        "List events newest first, one page at a time." + PARAM_FILTER_NOTE,
        "analytics",
        tenant_only=True,
        query=(
            *RANGE_PARAMS,
            *FILTER_PARAMS,
            Param(
                "limit",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": model.MAX_EVENTS_LIMIT,
                    "default": 100,
                },
                "Events per page.",
            ),
            Param(
                "cursor",
                {"type": "string", "maxLength": 1024},
                "next_cursor of the previous page, unchanged.",
            ),
        ),
        query_prefixes=(PARAM_PREFIX,),
        response={
            "type": "object",
            "required": ["events", "next_cursor", "tier", "data_through", "data_through_ms"],
            "properties": {
                "events": {"type": "array", "items": {"type": "object"}},
                "next_cursor": {"type": ["string", "null"]},
                **FRESHNESS,
            },
        },
        errors=(422, 503, 504),
    ),
    Route(
        "GET",
        "/api/events/stats",
        event_stats,
        "read",
        "Count events, grouped by event_type, param:<key>, hour or day. Events without a grouped param key form a group with null."
        + PARAM_FILTER_NOTE,
        "analytics",
        tenant_only=True,
        query=(
            *RANGE_PARAMS,
            *FILTER_PARAMS,
            Param(
                "group_by",
                {"type": "string", "maxLength": 600},
                "Comma list of event_type, param:<key>, hour, day (at most 4).",
            ),
            Param(
                "tz",
                {"type": "string", "maxLength": 64},
                "IANA time zone of hour and day buckets (default UTC).",
            ),
        ),
        query_prefixes=(PARAM_PREFIX,),
        response={
            "type": "object",
            "required": ["total", "rows", "tier", "data_through", "data_through_ms"],
            "properties": {
                "total": {"type": "integer"},
                "rows": {"type": "array", "items": {"type": "object"}},
                "truncated": {"type": "boolean"},
                "group_by": {"type": "array", "items": {"type": "string"}},
                "tz": {"type": "string"},
                **FRESHNESS,
            },
        },
        errors=(422, 503, 504),
    ),
    Route(
        "GET",
        "/api/events/match",
        match_events,
        "read",
        "Pair trigger events with later result events that share the value of param `on`",
        "analytics",
        tenant_only=True,
        query=(
            Param(
                "trigger",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                "Event type that starts a pair.",
                required=True,
            ),
            Param(
                "result",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                "Event type that completes a pair; must differ from trigger.",
                required=True,
            ),
            Param(
                "on",
                {"type": "string", "minLength": 1, "maxLength": model.MAX_PARAM_KEY_LEN},
                "Param key whose values must be equal.",
                required=True,
            ),
            Param(
                "window",
                {"type": "string", "pattern": "^[0-9]{1,12}(ms|s|m|h|d)?$"},
                "Longest delay from trigger to result: 30m, 24h, 7d or milliseconds (default 24h).",
            ),
            Param(
                "limit",
                {"type": "integer", "minimum": 0, "maximum": model.MAX_MATCH_LIMIT, "default": 100},
                "Pairs listed; the summary counts all.",
            ),
            *RANGE_PARAMS,
        ),
        response={
            "type": "object",
            "required": ["pairs", "summary", "tier", "data_through", "data_through_ms"],
            "properties": {
                "pairs": {"type": "array", "items": {"type": "object"}},
                "summary": {"type": "object"},
                "match_rate": {"type": "number"},
                "window_ms": {"type": "integer"},
                **FRESHNESS,
            },
        },
        errors=(422, 503, 504),
    ),
]

PATH_SCHEMAS: dict[str, Any] = {}
