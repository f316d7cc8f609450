"""Settings of the dashboard pages: the public addresses of the SSE gateway and of ingest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tracker.errors import ConfigError
from tracker.settings import Env

__all__ = ["DashboardSettings"]

# A host name or IP literal; anything else in a Host header is not echoed into the CSP.
_HOSTNAME = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")


def _origin(env: Env, name: str) -> str | None:
    """Read an optional http(s) origin such as `https://sse.example.com`, without a path."""
    value = env.str(name)
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            name, f"must be an http(s) origin such as https://host:port, got {value[:80]!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(name, "must be an origin only, without a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Public origins of the SSE gateway and of ingest, as browsers reach them.

    When `SSE_PUBLIC_URL` is unset, the page uses the host name it loaded the
    dashboard from with `SSE_PORT`. When `INGEST_PUBLIC_URL` is unset, click URLs
    are built on `API_HOST` with the ingest `PORT`.
    """

    sse_public_url: str | None
    sse_port: int
    ingest_public_url: str

    @classmethod
    def from_env(cls, env: Env) -> DashboardSettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        api_host = env.str("API_HOST", "127.0.0.1") or "127.0.0.1"
        ingest_port = env.int("PORT", 3030, minimum=1, maximum=65535)
        host = f"[{api_host}]" if ":" in api_host else api_host
        return cls(
            sse_public_url=_origin(env, "SSE_PUBLIC_URL"),
            sse_port=env.int("SSE_PORT", 3031, minimum=1, maximum=65535),
            ingest_public_url=_origin(env, "INGEST_PUBLIC_URL") or f"http://{host}:{ingest_port}",
        )

    def sse_origin(self, request_host: str) -> str:
        """Return the SSE gateway's origin as a page loaded from `request_host` reaches it."""
        if self.sse_public_url is not None:
            return self.sse_public_url
        try:
            hostname = urlsplit(f"//{request_host}").hostname or ""
        except ValueError:
            hostname = ""
        if not _HOSTNAME.match(hostname):
            hostname = "127.0.0.1"
        if ":" in hostname:
            hostname = f"[{hostname}]"
        return f"http://{hostname}:{self.sse_port}"
