"""HTTP calls from the MCP tools to the platform services, and the translation of failures into tool errors.

Every failure becomes `ToolError` whose text is one compact JSON object with the
HTTP status and the API's `code`, `field` and `message`, so an assistant reads the
reason instead of a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

__all__ = ["ApiClient", "QueryPairs", "failure", "tool_result"]

logger = logging.getLogger(__name__)

QueryPairs = Sequence[tuple[str, str]]
"""Query parameters as (name, value) pairs, so a name may repeat."""

MAX_ECHOED_TEXT = 200


def failure(code: str, message: str, *, field: str = "", status: int | None = None) -> ToolError:
    """Build the tool error for one failure; `status` is the HTTP status when a service responded."""
    error: dict[str, Any] = {"code": code, "field": field, "message": message}
    if status is not None:
        error["status"] = status
    return ToolError(orjson.dumps({"error": error}).decode())


def tool_result(payload: Mapping[str, Any], *, source: str) -> CallToolResult:
    """Wrap a JSON object as a tool result; `source` names the service that produced it."""
    body = {**payload, "source": source}
    return CallToolResult(
        content=[TextContent(type="text", text=orjson.dumps(body).decode())],
        structured_content=body,
    )


class ApiClient:
    """Async calls to the platform API, ingest and SSE services over one httpx client."""

    def __init__(self, *, api_url: str, timeout_seconds: float) -> None:
        self.api_url = api_url
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        api_key: str,
        query: QueryPairs = (),
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one API request with the key as a bearer token; return the JSON body or raise ToolError."""
        headers = {"Authorization": f"Bearer {api_key}"}
        content = orjson.dumps(body) if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = await self._send(
            method, f"{self.api_url}{path}", headers=headers, params=list(query), content=content
        )
        return _json_or_error(response, service="api", path=path)

    async def probe(self, url: str) -> tuple[int, Any]:
        """GET a health URL without credentials; return the status and the JSON body (or text)."""
        response = await self._send("GET", url, headers={}, params=[], content=None)
        try:
            return response.status_code, orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return response.status_code, response.text[:MAX_ECHOED_TEXT]

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: list[tuple[str, str]],
        content: bytes | None,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method, url, headers=headers, params=params, content=content
            )
        except httpx.TimeoutException:
            logger.warning("Platform request timed out.", extra={"method": method, "url": url})
            raise failure(
                "timeout", f"{method} {url} timed out; check that the service is running"
            ) from None
        except httpx.HTTPError as error:
            logger.warning(
                "Platform request failed.",
                extra={"method": method, "url": url, "error": type(error).__name__},
            )
            raise failure(
                "unreachable",
                f"{method} {url} failed ({type(error).__name__}); check the service URL and that it is running",
            ) from None


def _json_or_error(response: httpx.Response, *, service: str, path: str) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = None

    if response.is_success and isinstance(body, dict):
        return body
    if response.is_success:
        raise failure(
            "invalid_response",
            f"{service} answered {path} with {response.status_code} but no JSON object",
            status=response.status_code,
        )

    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise failure(
            str(error.get("code", "error")),
            str(error.get("message", "")),
            field=str(error.get("field", "")),
            status=response.status_code,
        )
    # Paths that match no route get a plain-text 404 from Robyn, without the error object.
    raise failure(
        "not_found" if response.status_code == 404 else "http_error",
        f"{service} answered {path} with {response.status_code}: {response.text[:MAX_ECHOED_TEXT]}",
        status=response.status_code,
    )
