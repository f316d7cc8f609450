"""Settings of the platform API server, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tracker.errors import ConfigError
from tracker.settings import Env

__all__ = ["ApiSettings"]

MIN_ADMIN_KEY_LENGTH = 24


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Listen address, registry location and request limits of the API server."""

    host: str
    port: int
    admin_key: str | None = field(repr=False)
    registry_path: Path
    turso_url: str | None
    turso_token: str | None = field(repr=False)
    max_body_bytes: int
    request_log: bool

    @classmethod
    def from_env(cls, env: Env) -> ApiSettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
        admin_key = env.str("ADMIN_API_KEY")
        if admin_key is not None and len(admin_key) < MIN_ADMIN_KEY_LENGTH:
            raise ConfigError(
                "ADMIN_API_KEY",
                f"must be at least {MIN_ADMIN_KEY_LENGTH} characters; generate one with"
                " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        return cls(
            host=env.str("API_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("API_PORT", 8787, minimum=1, maximum=65535),
            admin_key=admin_key,
            registry_path=env.path("REGISTRY_PATH", data_dir / "registry.db"),
            turso_url=env.str("TURSO_URL"),
            turso_token=env.str("TURSO_AUTH_TOKEN"),
            max_body_bytes=env.int(
                "API_MAX_BODY_BYTES", 65_536, minimum=1024, maximum=16 * 1024 * 1024
            ),
            request_log=env.bool("API_REQUEST_LOG", True),
        )
