"""Settings shared by every consumer process, read from the environment."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from tracker.settings import Env

__all__ = ["ConsumerSettings"]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Polling, retry, metrics and registry settings of one consumer process."""

    data_dir: Path
    registry_path: Path
    turso_url: str | None
    turso_token: str | None
    member: str
    poll_messages: int
    idle_sleep_seconds: float
    idle_max_sleep_seconds: float
    heartbeat_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    metrics_host: str
    metrics_port: int

    @classmethod
    def from_env(cls, env: Env) -> ConsumerSettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
        default_member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        retry_base_ms = env.int("CONSUMER_RETRY_BASE_MS", 100, minimum=1)
        idle_ms = env.int("CONSUMER_IDLE_SLEEP_MS", 50, minimum=1)
        retry_max_ms = env.int("CONSUMER_RETRY_MAX_MS", 30_000, minimum=retry_base_ms)
        return cls(
            data_dir=data_dir,
            registry_path=env.path("REGISTRY_PATH", data_dir / "registry.db"),
            turso_url=env.str("TURSO_URL"),
            turso_token=env.str("TURSO_AUTH_TOKEN"),
            member=env.str("CONSUMER_MEMBER", default_member) or default_member,
            # Messages are record batches of up to 10,000 events each, so this bounds
            # the events held in memory per partition at once.
            poll_messages=env.int("CONSUMER_POLL_MESSAGES", 16, minimum=1, maximum=1000),
            idle_sleep_seconds=idle_ms / 1000,
            idle_max_sleep_seconds=env.int("CONSUMER_IDLE_MAX_SLEEP_MS", 250, minimum=idle_ms)
            / 1000,
            heartbeat_seconds=env.float("CONSUMER_HEARTBEAT_SECONDS", 1.0, minimum=0.05),
            retry_base_seconds=retry_base_ms / 1000,
            retry_max_seconds=retry_max_ms / 1000,
            metrics_host=env.str("CONSUMER_METRICS_HOST", "127.0.0.1") or "127.0.0.1",
            metrics_port=env.int("CONSUMER_METRICS_PORT", 0, minimum=0, maximum=65535),
        )
