"""Serve the web dashboard's static files and its config under /dashboard.

The pages need no API key: they hold no tenant data, and every call the page
makes to /api sends the key the user typed. Every response carries a strict
Content-Security-Policy whose `connect-src` adds only the SSE gateway's origin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from tracker.api.dashboard.settings import DashboardSettings
from tracker.settings import load_env

__all__ = ["DashboardFile", "load_files", "register", "security_headers"]

logger = logging.getLogger(__name__)

PREFIX = "/dashboard"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class DashboardFile:
    """One static file of the dashboard, read once at start-up."""

    content: bytes
    content_type: str


def load_files() -> dict[str, DashboardFile]:
    """Read the dashboard's static files from the installed package."""
    package = resources.files("tracker.api.dashboard")
    return {
        name: DashboardFile(package.joinpath(name).read_bytes(), content_type)
        for name, content_type in ASSETS.items()
    }


def security_headers(sse_origin: str, content_type: str) -> dict[str, str]:
    """Return the headers of every dashboard response, CSP first."""
    policy = (
        "default-src 'self'; "
        f"connect-src 'self' {sse_origin}; "
        "img-src 'self' data:; "
        "script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _request_host(request: Any) -> str:
    headers = request.headers
    return headers.get("host") or headers.get("Host") or ""


def register(app: Any, robyn: Any) -> list[tuple[str, str]]:
    """Add GET routes for the dashboard page, its assets and /dashboard/config.json to `app`.

    Returns the (method, path) pairs it added.
    """
    settings = DashboardSettings.from_env(load_env())
    files = load_files()

    def serve(name: str) -> Any:
        asset = files[name]

        async def handle(request: Any) -> Any:
            origin = settings.sse_origin(_request_host(request))
            headers = security_headers(origin, asset.content_type)
            return robyn.Response(status_code=200, headers=headers, description=asset.content)

        handle.__name__ = f"dashboard_{name.replace('.', '_')}"
        return handle

    async def config(request: Any) -> Any:
        origin = settings.sse_origin(_request_host(request))
        body = orjson.dumps({"sse_url": origin, "api_base": "/api"})
        headers = security_headers(origin, "application/json")
        return robyn.Response(status_code=200, headers=headers, description=body)

    # Robyn strips a trailing slash, so this route also serves /dashboard/.
    routes = [
        (PREFIX, serve("index.html")),
        (f"{PREFIX}/app.js", serve("app.js")),
        (f"{PREFIX}/app.css", serve("app.css")),
        (f"{PREFIX}/config.json", config),
    ]
    for path, handler in routes:
        app.add_route("GET", path, handler)
    logger.info("Dashboard routes added.", extra={"prefix": PREFIX})
    return [("GET", path) for path, _ in routes]
