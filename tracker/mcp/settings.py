"""Settings of the MCP server, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.errors import ConfigError
from tracker.settings import Env

__all__ = ["McpSettings"]

DEFAULT_API_URL = "http://127.0.0.1:8787"
DEFAULT_INGEST_URL = "http://127.0.0.1:3030"
DEFAULT_SSE_URL = "http://127.0.0.1:3031"
MIN_HMAC_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class McpSettings:
    """Service URLs of the platform, the API key to call them with, and optional link secrets."""

    api_url: str
    ingest_url: str
    sse_url: str
    api_key: str | None = field(repr=False)
    admin_api_key: str | None = field(repr=False)
    hmac_secret: bytes | None = field(repr=False)
    aes_key: bytes | None = field(repr=False)
    aes_key_id: int
    timeout_seconds: float

    @classmethod
    def from_env(cls, env: Env) -> McpSettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        return cls(
            api_url=_base_url(env, "TRACKER_API_URL", DEFAULT_API_URL),
            ingest_url=_base_url(env, "TRACKER_INGEST_URL", DEFAULT_INGEST_URL),
            sse_url=_base_url(env, "TRACKER_SSE_URL", DEFAULT_SSE_URL),
            api_key=env.str("TRACKER_API_KEY"),
            admin_api_key=env.str("TRACKER_ADMIN_API_KEY"),
            hmac_secret=_hmac_secret(env),
            aes_key=env.hex_key("TRACKER_AES_KEY", length=32),
            aes_key_id=env.int("TRACKER_AES_KEY_ID", 0, minimum=0, maximum=255),
            timeout_seconds=env.float("TRACKER_MCP_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        )


def _base_url(env: Env, name: str, default: str) -> str:
    value = env.str(name, default) or default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(name, f"expected an http(s) URL such as {default}, got {value[:50]!r}")
    return value.rstrip("/")


def _hmac_secret(env: Env) -> bytes | None:
    value = env.raw("TRACKER_HMAC_SECRET")
    if value is None:
        return None
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise ConfigError("TRACKER_HMAC_SECRET", "expected hex digits (hmac_secret_hex)") from None
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ConfigError(
            "TRACKER_HMAC_SECRET",
            f"expected at least {MIN_HMAC_SECRET_BYTES} bytes, got {len(secret)}",
        )
    return secret
