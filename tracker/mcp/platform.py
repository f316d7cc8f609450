"""State the tools share: settings, the HTTP client, and which API key and tenant a call acts for."""

from __future__ import annotations

import re
from typing import Any

from mcp.server.mcpserver import Context

from tracker.mcp.client import ApiClient, QueryPairs, failure
from tracker.mcp.settings import McpSettings

__all__ = ["Platform", "require_confirm"]

_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)


def require_confirm(confirm: bool, action: str) -> None:
    """Reject a destructive call unless the assistant passed `confirm: true`."""
    if confirm is not True:
        raise failure(
            "confirmation_required",
            f"{action}; call again with confirm: true to proceed",
            field="confirm",
        )


class Platform:
    """The MCP server's view of the platform: where services live and whose key a call uses."""

    def __init__(self, settings: McpSettings) -> None:
        self.settings = settings
        self.client = ApiClient(api_url=settings.api_url, timeout_seconds=settings.timeout_seconds)
        self._tenants: dict[str, str] = {}

    def api_key(self, ctx: Context) -> str:
        """Return the caller's key: the HTTP client's bearer token, else the configured key."""
        header = self._authorization(ctx)
        if header is not None:
            match = _BEARER.fullmatch(header.strip())
            if match is None:
                raise failure(
                    "invalid_authorization",
                    "the Authorization header must read 'Bearer <API key>'",
                    field="Authorization",
                )
            return match.group(1)
        if self.settings.api_key is None:
            raise failure(
                "missing_api_key",
                "no API key: set TRACKER_API_KEY, pass --api-key, or send Authorization: Bearer <key>",
                field="api_key",
            )
        return self.settings.api_key

    def uses_configured_key(self, ctx: Context) -> bool:
        """Tell whether this call acts with the key the server was started with."""
        return self.api_key(ctx) == self.settings.api_key

    async def call(
        self,
        ctx: Context,
        method: str,
        path: str,
        *,
        query: QueryPairs = (),
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one API request on behalf of the caller."""
        return await self.client.call(
            method, path, api_key=self.api_key(ctx), query=query, body=body
        )

    async def tenant(self, ctx: Context) -> str:
        """Return the key prefix of the caller's tenant, looked up once per key through GET /api/keys."""
        key = self.api_key(ctx)
        cached = self._tenants.get(key)
        if cached is not None:
            return cached
        found = await self.client.call("GET", "/api/keys", api_key=key)
        keys = found.get("keys") or []
        if not keys:
            raise failure(
                "unknown_tenant", "GET /api/keys returned no key, so the tenant is unknown"
            )
        key_prefix = str(keys[0]["key_prefix"])
        self._tenants[key] = key_prefix
        return key_prefix

    @staticmethod
    def _authorization(ctx: Context) -> str | None:
        try:
            headers = ctx.headers
        except ValueError:  # outside a request, as in direct calls from tests
            return None
        if headers is None:
            return None
        return headers.get("authorization")
