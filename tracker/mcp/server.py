"""Build the MCP server: one MCPServer with every tool group registered on a shared Platform."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from tracker.mcp import analytics, health, links, tenant, url_builders, webhooks
from tracker.mcp.platform import Platform
from tracker.mcp.settings import McpSettings

__all__ = ["build_server"]

INSTRUCTIONS = (
    "Tools for one tenant of tracker-platform, an event-tracking platform. Every result is JSON "
    "with `source` (the service that answered); analytics results also carry `tier` (hot, warm "
    "or cold) and `data_through`. Errors carry code, field and message from the API. Tools that "
    "rotate, disable or delete need confirm: true."
)


def build_server(settings: McpSettings) -> MCPServer:
    """Return an MCPServer whose tools call the platform described by `settings`."""
    server: MCPServer = MCPServer(
        name="tracker-platform", instructions=INSTRUCTIONS, log_level="WARNING"
    )
    platform = Platform(settings)
    for group in (tenant, links, url_builders, analytics, webhooks, health):
        group.register(server, platform)
    return server
