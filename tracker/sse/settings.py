"""Settings of the SSE gateway, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from tracker.settings import Env

__all__ = ["SseSettings"]


@dataclass(frozen=True, slots=True)
class SseSettings:
    """Listening address, stream timing and per-client limits of the SSE gateway."""

    host: str = "127.0.0.1"
    port: int = 3031
    heartbeat_seconds: float = 15.0
    client_buffer: int = 1000
    slow_client_grace_seconds: float = 0.25
    max_connections_per_tenant: int = 100
    poll_seconds: float = 0.02
    read_messages: int = 64
    replay_max_events: int = 10_000
    retry_ms: int = 2000
    allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Env) -> SseSettings:
        return cls(
            host=env.str("SSE_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.int("SSE_PORT", 3031, minimum=0, maximum=65535),
            heartbeat_seconds=env.float("SSE_HEARTBEAT_SECONDS", 15.0, minimum=0.05),
            client_buffer=env.int("SSE_CLIENT_BUFFER", 1000, minimum=1, maximum=1_000_000),
            slow_client_grace_seconds=env.int("SSE_SLOW_CLIENT_GRACE_MS", 250, minimum=0) / 1000,
            max_connections_per_tenant=env.int("SSE_MAX_CONNECTIONS_PER_TENANT", 100, minimum=1),
            poll_seconds=env.int("SSE_POLL_MS", 20, minimum=1) / 1000,
            read_messages=env.int("SSE_READ_MESSAGES", 64, minimum=1, maximum=10_000),
            replay_max_events=env.int("SSE_REPLAY_MAX_EVENTS", 10_000, minimum=0),
            retry_ms=env.int("SSE_RETRY_MS", 2000, minimum=0),
            allowed_origins=tuple(
                origin.strip().rstrip("/")
                for origin in (env.str("SSE_ALLOWED_ORIGINS", "") or "").split(",")
                if origin.strip()
            ),
        )
