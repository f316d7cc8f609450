"""Health tool: requests the health of ingest, the API and the SSE gateway concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations

from tracker.mcp.client import tool_result
from tracker.mcp.platform import Platform

__all__ = ["register"]

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def register(server: MCPServer, platform: Platform) -> None:
    """Add the health tool to `server`."""

    async def probe(url: str) -> dict[str, Any]:
        try:
            status, body = await platform.client.probe(url)
        except ToolError as error:
            return {"url": url, "ok": False, "error": str(error)}
        return {"url": url, "ok": status == 200, "http_status": status, "body": body}

    @server.tool(
        name="get_platform_health",
        description=(
            "Check every platform component: ingest GET /health, API GET /api/health (registry "
            "and each analytics tier) and the SSE gateway GET /health. `ok` is true only when all "
            "three answer 200. Needs no API key."
        ),
        annotations=READ_ONLY,
    )
    async def get_platform_health(ctx: Context) -> CallToolResult:
        settings = platform.settings
        ingest, api, sse = await asyncio.gather(
            probe(f"{settings.ingest_url}/health"),
            probe(f"{settings.api_url}/api/health"),
            probe(f"{settings.sse_url}/health"),
        )
        components = {"ingest": ingest, "api": api, "sse": sse}
        ok = all(component["ok"] for component in components.values())
        return tool_result({"ok": ok, "components": components}, source="ingest,api,sse")
