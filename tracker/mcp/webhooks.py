"""Webhook tools: endpoints, their deliveries, dead letters and replay."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from tracker.mcp.client import tool_result
from tracker.mcp.fields import Confirm
from tracker.mcp.platform import Platform, require_confirm

__all__ = ["register"]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

EndpointId = Annotated[
    str,
    Field(
        description="Id of a webhook endpoint.",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        examples=["01HZX3K9Q2"],
    ),
]
Limit = Annotated[
    int, Field(description="Maximum number of deliveries to return.", ge=1, le=1000, examples=[20])
]
Before = Annotated[
    int | None,
    Field(
        description="Only deliveries created before this Unix time in seconds (for paging).",
        ge=0,
        examples=[1764547200],
    ),
]


def _page(limit: int, before: int | None) -> list[tuple[str, str]]:
    query = [("limit", str(limit))]
    if before is not None:
        query.append(("before", str(before)))
    return query


def register(server: MCPServer, platform: Platform) -> None:
    """Add the webhook tools to `server`."""

    @server.tool(
        name="list_webhooks",
        description="List the tenant's webhook endpoints: URL, event type and param filters, status.",
        annotations=READ_ONLY,
    )
    async def list_webhooks(ctx: Context) -> CallToolResult:
        return tool_result(await platform.call(ctx, "GET", "/api/webhooks"), source="api")

    @server.tool(
        name="get_webhook",
        description="Get one webhook endpoint by its endpoint_id.",
        annotations=READ_ONLY,
    )
    async def get_webhook(ctx: Context, endpoint_id: EndpointId) -> CallToolResult:
        return tool_result(
            await platform.call(ctx, "GET", f"/api/webhooks/{endpoint_id}"), source="api"
        )

    @server.tool(
        name="create_webhook",
        description=(
            "Register a webhook endpoint. Changes stored state: from now on the platform POSTs "
            "every matching event, signed, to `url`. The response holds the signing secret, shown "
            "only this once; pass it to whoever verifies the deliveries."
        ),
        annotations=WRITE,
    )
    async def create_webhook(
        ctx: Context,
        url: Annotated[
            str,
            Field(
                description="Absolute http(s) URL that receives the POSTs.",
                pattern=r"^https?://",
                max_length=2048,
                examples=["https://hooks.example.com/tracker"],
            ),
        ],
        event_types: Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] | None,
            Field(description="Only events of these types (default all).", examples=[["postback"]]),
        ] = None,
        param_filters: Annotated[
            dict[str, str] | None,
            Field(
                description="Only events whose params hold all of these pairs.",
                examples=[{"offer_id": "123"}],
            ),
        ] = None,
        description: Annotated[
            str | None,
            Field(description="Label for people.", max_length=500, examples=["CRM sync"]),
        ] = None,
    ) -> CallToolResult:
        body: dict[str, Any] = {"url": url}
        if event_types is not None:
            body["event_types"] = event_types
        if param_filters is not None:
            body["param_filters"] = param_filters
        if description is not None:
            body["description"] = description
        return tool_result(
            await platform.call(ctx, "POST", "/api/webhooks", body=body), source="api"
        )

    @server.tool(
        name="delete_webhook",
        description=(
            "Delete a webhook endpoint. Changes stored state: deliveries to it stop and its "
            "delivery history is deleted; this cannot be undone. Needs confirm: true."
        ),
        annotations=DESTRUCTIVE,
    )
    async def delete_webhook(
        ctx: Context, endpoint_id: EndpointId, confirm: Confirm = False
    ) -> CallToolResult:
        require_confirm(confirm, f"deleting {endpoint_id} also deletes its delivery history")
        return tool_result(
            await platform.call(ctx, "DELETE", f"/api/webhooks/{endpoint_id}"), source="api"
        )

    @server.tool(
        name="list_webhook_deliveries",
        description="List one endpoint's deliveries, newest first: status, attempts, last error and response code.",
        annotations=READ_ONLY,
    )
    async def list_webhook_deliveries(
        ctx: Context,
        endpoint_id: EndpointId,
        status: Annotated[
            Literal["pending", "delivering", "delivered", "dead"] | None,
            Field(description="Only deliveries in this state.", examples=["dead"]),
        ] = None,
        limit: Limit = 20,
        before: Before = None,
    ) -> CallToolResult:
        query = _page(limit, before)
        if status is not None:
            query.append(("status", status))
        found = await platform.call(
            ctx, "GET", f"/api/webhooks/{endpoint_id}/deliveries", query=query
        )
        return tool_result(found, source="api")

    @server.tool(
        name="list_webhook_dead_letters",
        description="List deliveries the platform gave up on after its retries (dead letters), newest first, optionally for one endpoint.",
        annotations=READ_ONLY,
    )
    async def list_webhook_dead_letters(
        ctx: Context,
        endpoint_id: Annotated[
            str | None,
            Field(
                description="Only this endpoint's dead letters.",
                pattern=r"^[A-Za-z0-9_-]{1,64}$",
                examples=["01HZX3K9Q2"],
            ),
        ] = None,
        limit: Limit = 20,
        before: Before = None,
    ) -> CallToolResult:
        query = _page(limit, before)
        if endpoint_id is not None:
            query.append(("endpoint_id", endpoint_id))
        found = await platform.call(ctx, "GET", "/api/webhook-dead-letters", query=query)
        return tool_result(found, source="api")

    @server.tool(
        name="replay_webhook_delivery",
        description=(
            "Queue a dead or delivered webhook delivery again. Changes stored state: the delivery "
            "goes back to pending and the endpoint receives the event once more."
        ),
        annotations=WRITE,
    )
    async def replay_webhook_delivery(
        ctx: Context,
        delivery_id: Annotated[
            str,
            Field(
                description="Id of the delivery, from list_webhook_deliveries or list_webhook_dead_letters.",
                pattern=r"^[A-Za-z0-9_-]{1,64}$",
                examples=["01HZX4A1B2"],
            ),
        ],
    ) -> CallToolResult:
        replayed = await platform.call(ctx, "POST", f"/api/webhook-deliveries/{delivery_id}/replay")
        return tool_result(replayed, source="api")
