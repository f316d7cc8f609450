"""JSON error responses for requests that match no route, shared by every Robyn service.

Robyn returns a plain-text "Not found" for an unknown path, and for a known
path requested with the wrong method. The ingest service, the API and the SSE
gateway instead register a catch-all route for every method. It returns 404
`not_found`, or 405 `method_not_allowed` with an `Allow` header when the path
exists under other methods, in the usual body `{"error": {"code", "field", "message"}}`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

__all__ = ["METHODS", "RouteTable", "add_unmatched_routes"]

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
_CATCH_ALL = "/*unmatched_path"
_MAX_PATH_CHARS_IN_MESSAGE = 120


class RouteTable:
    """The methods allowed on each registered path, matched the way Robyn matches `:name`."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        patterns: dict[str, set[str]] = {}
        for method, path in routes:
            patterns.setdefault(path, set()).add(method.upper())
        self._routes = [
            (re.compile(_pattern(path)), frozenset(methods)) for path, methods in patterns.items()
        ]
        self.paths = frozenset(patterns)

    def allowed(self, path: str) -> frozenset[str]:
        """Every method some route accepts on `path`; empty when no route has that path."""
        allowed: set[str] = set()
        for pattern, methods in self._routes:
            if pattern.fullmatch(path):
                allowed |= methods
        return frozenset(allowed)


def _pattern(path: str) -> str:
    return "/".join(
        "[^/]+" if part.startswith(":") else re.escape(part) for part in path.split("/")
    )


def unmatched_body(method: str, path: str, allowed: frozenset[str]) -> tuple[int, bytes, dict]:
    """Status, JSON body and extra headers for `method path` given the methods the path allows."""
    limit = _MAX_PATH_CHARS_IN_MESSAGE
    path_in_message = path if len(path) <= limit else path[:limit] + "..."
    if allowed:
        methods = ", ".join(sorted(allowed))
        error = {
            "code": "method_not_allowed",
            "field": "method",
            "message": f"{method} is not allowed on {path_in_message}; use {methods}",
        }
        return 405, orjson.dumps({"error": error}), {"Allow": methods}
    error = {"code": "not_found", "field": "path", "message": f"no endpoint at {path_in_message}"}
    return 404, orjson.dumps({"error": error}), {}


def add_unmatched_routes(
    app: Any,
    routes: Iterable[tuple[str, str]],
    wrap: Callable[[Callable[[Any], Awaitable[Any]]], Callable[[Any], Awaitable[Any]]]
    | None = None,
) -> None:
    """Register the catch-all routes on `app`; call it after every other route is added.

    `routes` lists the app's (method, path) pairs. When `wrap` is given, it
    wraps the catch-all handler: the ingest service passes its guard, which
    checks the headers and counts the request.
    """
    from robyn import Request, Response

    table = RouteTable(routes)

    async def unmatched(request: Request) -> Response:
        method = request.method.upper()
        path = request.url.path or "/"
        status, body, extra = unmatched_body(method, path, table.allowed(path))
        logger.debug("Request matched no route.", extra={"method": method, "status": status})
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **extra}
        return Response(status, headers, body)

    handler = wrap(unmatched) if wrap is not None else unmatched
    for method in METHODS:
        app.add_route(method, _CATCH_ALL, handler, include_in_schema=False)
        if "/" not in table.paths or method not in table.allowed("/"):
            app.add_route(method, "/", handler, include_in_schema=False)
