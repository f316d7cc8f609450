"""Analytics tools: event search, grouped stats, click-to-result matching and the newest events."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from tracker.mcp.client import tool_result
from tracker.mcp.fields import (
    EventTypes,
    FromTime,
    Hours,
    ParamFilters,
    Tier,
    ToTime,
    filter_query,
    range_query,
)
from tracker.mcp.platform import Platform

__all__ = ["register"]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MAX_RECENT_EVENTS = 100

GroupBy = Annotated[
    list[Annotated[str, Field(pattern=r"^(event_type|hour|day|param:.{1,128})$")]] | None,
    Field(
        description="Dimensions to count by: event_type, hour, day, or param:<key>. Empty gives only the total.",
        max_length=4,
        examples=[["event_type"], ["param:offer_id", "day"]],
    ),
]


def register(server: MCPServer, platform: Platform) -> None:
    """Add the analytics tools to `server`."""

    @server.tool(
        name="search_events",
        description=(
            "Search the tenant's events, newest first, filtered by time range, event type and "
            "param values. Returns one page of up to `limit` events and `next_cursor` for the "
            "next page; `tier` names the analytics tier that answered."
        ),
        annotations=READ_ONLY,
    )
    async def search_events(
        ctx: Context,
        event_types: EventTypes = None,
        params: ParamFilters = None,
        hours: Hours = None,
        from_time: FromTime = None,
        to_time: ToTime = None,
        tier: Tier = None,
        limit: Annotated[int, Field(description="Page size.", ge=1, le=1000, examples=[50])] = 50,
        cursor: Annotated[
            str | None,
            Field(description="next_cursor of the previous page.", max_length=2048),
        ] = None,
    ) -> CallToolResult:
        query = [
            *range_query(hours, from_time, to_time, tier),
            *filter_query(event_types, params),
            ("limit", str(limit)),
        ]
        if cursor is not None:
            query.append(("cursor", cursor))
        page = await platform.call(ctx, "GET", "/api/events", query=query)
        return tool_result(page, source="api")

    @server.tool(
        name="get_event_stats",
        description=(
            "Count the tenant's events in a time range, optionally filtered and grouped by event "
            "type, param:<key>, hour or day (in time zone `tz`). Returns `total` and `rows` with a "
            "`count` each; `tier` names the analytics tier that answered."
        ),
        annotations=READ_ONLY,
    )
    async def get_event_stats(
        ctx: Context,
        group_by: GroupBy = None,
        event_types: EventTypes = None,
        params: ParamFilters = None,
        hours: Hours = None,
        from_time: FromTime = None,
        to_time: ToTime = None,
        tier: Tier = None,
        tz: Annotated[
            str | None,
            Field(
                description="IANA time zone for hour and day buckets (default UTC).",
                max_length=64,
                examples=["Europe/Berlin"],
            ),
        ] = None,
    ) -> CallToolResult:
        query = [*range_query(hours, from_time, to_time, tier), *filter_query(event_types, params)]
        if group_by:
            query.append(("group_by", ",".join(group_by)))
        if tz is not None:
            query.append(("tz", tz))
        stats = await platform.call(ctx, "GET", "/api/events/stats", query=query)
        return tool_result(stats, source="api")

    @server.tool(
        name="match_events",
        description=(
            "Match trigger events (such as clicks) to result events (such as postbacks) that share "
            "the value of param `on` within `window`. Returns the pairs, a summary and "
            "`match_rate` (matched triggers / all triggers); `tier` names the tier that answered."
        ),
        annotations=READ_ONLY,
    )
    async def match_events(
        ctx: Context,
        result: Annotated[
            str,
            Field(
                description="Event type of the outcome.",
                pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                examples=["postback"],
            ),
        ],
        on: Annotated[
            str,
            Field(
                description="Param key whose value links a trigger to a result, such as the click id the postback carries.",
                min_length=1,
                max_length=128,
                examples=["click_id"],
            ),
        ],
        trigger: Annotated[
            str,
            Field(
                description="Event type that starts a journey.",
                pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                examples=["click"],
            ),
        ] = "click",
        window: Annotated[
            str | None,
            Field(
                description="Maximum time from trigger to result: 30m, 24h, 7d or milliseconds (default 24h on the API).",
                max_length=20,
                examples=["30m", "7d"],
            ),
        ] = None,
        hours: Hours = None,
        from_time: FromTime = None,
        to_time: ToTime = None,
        tier: Tier = None,
        limit: Annotated[
            int,
            Field(
                description="Maximum number of pairs to return; the summary counts all pairs.",
                ge=0,
                le=1000,
                examples=[20],
            ),
        ] = 20,
    ) -> CallToolResult:
        query = [
            ("trigger", trigger),
            ("result", result),
            ("on", on),
            ("limit", str(limit)),
            *range_query(hours, from_time, to_time, tier),
        ]
        if window is not None:
            query.append(("window", window))
        matched = await platform.call(ctx, "GET", "/api/events/match", query=query)
        return tool_result(matched, source="api")

    @server.tool(
        name="get_recent_events",
        description=(
            "Return the tenant's newest events of the last hour (at most `limit`), newest first, "
            "from the newest page of the events API. Use it to check that traffic is arriving."
        ),
        annotations=READ_ONLY,
    )
    async def get_recent_events(
        ctx: Context,
        limit: Annotated[
            int, Field(description="How many events.", ge=1, le=MAX_RECENT_EVENTS, examples=[10])
        ] = 10,
        event_types: EventTypes = None,
        tier: Tier = None,
    ) -> CallToolResult:
        query = [
            *range_query(1, None, None, tier),
            *filter_query(event_types, None),
            ("limit", str(limit)),
        ]
        page = await platform.call(ctx, "GET", "/api/events", query=query)
        return tool_result(
            {
                "events": page.get("events", []),
                "tier": page.get("tier"),
                "data_through": page.get("data_through"),
                "from": page.get("from"),
                "to": page.get("to"),
            },
            source="api",
        )
