"""Tenant tools: which tenant the key belongs to, its plan, and its API keys."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations

from tracker.mcp.client import tool_result
from tracker.mcp.platform import Platform

__all__ = ["register"]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
TIER_BY_PLAN = {"free": "warm", "pro": "cold"}


def register(server: MCPServer, platform: Platform) -> None:
    """Add the tenant tools to `server`."""

    @server.tool(
        name="get_tenant",
        description=(
            "Show the tenant the API key belongs to: key_prefix, the key's scope, the tenant's "
            "plan and status (when the server has TRACKER_ADMIN_API_KEY), and `default_tier`, the "
            "analytics tier that answers a query without a tier choice."
        ),
        annotations=READ_ONLY,
    )
    async def get_tenant(ctx: Context) -> CallToolResult:
        key = platform.api_key(ctx)
        keys = (await platform.call(ctx, "GET", "/api/keys")).get("keys", [])
        key_prefix = await platform.tenant(ctx)
        key_id = key.split("_")[1] if key.count("_") >= 2 else None
        own = next((item for item in keys if item.get("key_id") == key_id), None)

        stats = await platform.call(ctx, "GET", "/api/events/stats", query=[("hours", "1")])
        info: dict[str, Any] = {
            "key_prefix": key_prefix,
            "key_id": key_id,
            "scope": own.get("scope") if own else None,
            "default_tier": stats.get("tier"),
            "plan": None,
            "status": None,
            "tier_by_plan": TIER_BY_PLAN,
        }
        admin_key = platform.settings.admin_api_key
        if admin_key is not None:
            tenant = await platform.client.call(
                "GET", f"/api/tenants/{key_prefix}", api_key=admin_key
            )
            info.update({key: tenant.get(key) for key in ("plan", "status", "name", "created_at")})
        return tool_result(info, source="api")

    @server.tool(
        name="list_api_keys",
        description="List the tenant's API keys: key_id, scope (read or write), name, created_at and revoked_at. Secrets are never shown.",
        annotations=READ_ONLY,
    )
    async def list_api_keys(ctx: Context) -> CallToolResult:
        found = await platform.call(ctx, "GET", "/api/keys")
        return tool_result(found, source="api")
