"""Tracking URL tools: list, get, create, rotate, disable, enable and per-link stats of short links."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from tracker.mcp.client import tool_result
from tracker.mcp.fields import Confirm, FromTime, Hours, Tier, ToTime, TuId, range_query
from tracker.mcp.platform import Platform, require_confirm

__all__ = ["register"]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Destination = Annotated[
    str,
    Field(
        description="Absolute http(s) URL the link redirects to.",
        pattern=r"^https?://",
        max_length=2048,
        examples=["https://shop.example.com/landing?campaign=spring"],
    ),
]


def register(server: MCPServer, platform: Platform) -> None:
    """Add the tracking URL tools to `server`."""

    def with_short_url(link: dict[str, Any]) -> dict[str, Any]:
        return {**link, "short_url": f"{platform.settings.ingest_url}/t/{link['tu_id']}"}

    @server.tool(
        name="list_tracking_urls",
        description="List the tenant's tracking URLs (short links /t/<tu_id>), newest first, with destination, params and status.",
        annotations=READ_ONLY,
    )
    async def list_tracking_urls(ctx: Context) -> CallToolResult:
        found = await platform.call(ctx, "GET", "/api/tracking-urls")
        links = [with_short_url(link) for link in found.get("tracking_urls", [])]
        return tool_result({"tracking_urls": links, "count": len(links)}, source="api")

    @server.tool(
        name="get_tracking_url",
        description="Get one tracking URL by its tu_id: destination, params, status and its short URL.",
        annotations=READ_ONLY,
    )
    async def get_tracking_url(ctx: Context, tu_id: TuId) -> CallToolResult:
        link = await platform.call(ctx, "GET", f"/api/tracking-urls/{tu_id}")
        return tool_result(with_short_url(link), source="api")

    @server.tool(
        name="create_tracking_url",
        description=(
            "Create a tracking URL: registers a new short link /t/<tu_id> that redirects to "
            "`destination` and records a click with `params`. Changes stored state: adds one link."
        ),
        annotations=WRITE,
    )
    async def create_tracking_url(
        ctx: Context,
        destination: Destination,
        name: Annotated[
            str | None,
            Field(description="Label for people.", max_length=200, examples=["Spring sale banner"]),
        ] = None,
        params: Annotated[
            dict[str, str] | None,
            Field(
                description="Params recorded with every click on this link.",
                examples=[{"offer_id": "123", "source": "newsletter"}],
            ),
        ] = None,
    ) -> CallToolResult:
        body: dict[str, Any] = {"destination": destination}
        if name is not None:
            body["name"] = name
        if params is not None:
            body["params"] = params
        link = await platform.call(ctx, "POST", "/api/tracking-urls", body=body)
        return tool_result(with_short_url(link), source="api")

    @server.tool(
        name="rotate_tracking_url",
        description=(
            "Point an existing tracking URL at a new destination. Changes stored state: every "
            "later click on /t/<tu_id> redirects to the new destination, and the old one is not "
            "kept. Needs confirm: true."
        ),
        annotations=DESTRUCTIVE,
    )
    async def rotate_tracking_url(
        ctx: Context, tu_id: TuId, destination: Destination, confirm: Confirm = False
    ) -> CallToolResult:
        require_confirm(confirm, f"rotating {tu_id} replaces its destination for every later click")
        link = await platform.call(
            ctx, "PATCH", f"/api/tracking-urls/{tu_id}", body={"destination": destination}
        )
        return tool_result(with_short_url(link), source="api")

    @server.tool(
        name="disable_tracking_url",
        description=(
            "Disable a tracking URL. Changes stored state: /t/<tu_id> answers 410 Gone instead of "
            "redirecting, so visitors stop reaching the destination. Needs confirm: true."
        ),
        annotations=DESTRUCTIVE,
    )
    async def disable_tracking_url(
        ctx: Context, tu_id: TuId, confirm: Confirm = False
    ) -> CallToolResult:
        require_confirm(confirm, f"disabling {tu_id} makes every click on it fail with 410")
        link = await platform.call(
            ctx, "PATCH", f"/api/tracking-urls/{tu_id}", body={"status": "disabled"}
        )
        return tool_result(with_short_url(link), source="api")

    @server.tool(
        name="enable_tracking_url",
        description="Enable a disabled tracking URL again. Changes stored state: /t/<tu_id> redirects once more.",
        annotations=WRITE,
    )
    async def enable_tracking_url(ctx: Context, tu_id: TuId) -> CallToolResult:
        link = await platform.call(
            ctx, "PATCH", f"/api/tracking-urls/{tu_id}", body={"status": "active"}
        )
        return tool_result(with_short_url(link), source="api")

    @server.tool(
        name="get_tracking_url_stats",
        description=(
            "Count the events of one tracking URL (events whose param tu_id is this link) in a "
            "time range, grouped by event type and optionally by day. `tier` names the tier that answered."
        ),
        annotations=READ_ONLY,
    )
    async def get_tracking_url_stats(
        ctx: Context,
        tu_id: TuId,
        by_day: Annotated[
            bool, Field(description="Also group by UTC day.", examples=[True])
        ] = False,
        hours: Hours = None,
        from_time: FromTime = None,
        to_time: ToTime = None,
        tier: Tier = None,
    ) -> CallToolResult:
        # Fetch the link first, so an unknown tu_id is an error instead of zero counts.
        await platform.call(ctx, "GET", f"/api/tracking-urls/{tu_id}")
        query = [
            *range_query(hours, from_time, to_time, tier),
            ("param_key", "tu_id"),
            ("param_value", tu_id),
            ("group_by", "event_type,day" if by_day else "event_type"),
        ]
        stats = await platform.call(ctx, "GET", "/api/events/stats", query=query)
        return tool_result({"tu_id": tu_id, **stats}, source="api")
