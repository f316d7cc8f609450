"""Broker settings read from the environment: backend choice, local log, Iggy, producer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracker.errors import ConfigError
from tracker.settings import Env, load_env

__all__ = ["BACKENDS", "BrokerSettings"]

BACKENDS = ("local", "iggy", "noop")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Everything the broker backends and the producer read from the environment."""

    backend: str = "local"
    data_dir: Path = Path(".tracker")
    partitions: int = 24

    # Local log. `sync` is SQLite's synchronous mode: "normal" survives a crash of
    # the process, "full" also survives a power loss (one fsync per commit).
    local_sync: str = "full"
    local_busy_timeout_ms: int = 30_000
    local_threads: int = 4
    session_timeout_seconds: float = 10.0
    retention_consumed_seconds: float = 3600.0
    retention_max_age_seconds: float = 7 * 86400.0
    retention_max_bytes: int = 0
    retention_interval_seconds: float = 60.0
    retention_batch_rows: int = 500

    # Iggy.
    iggy_url: str = "127.0.0.1:8090"
    iggy_username: str = "iggy"
    iggy_password: str = "iggy"
    iggy_stream: str = "tracker"
    iggy_timeout_seconds: float = 5.0

    # Producer.
    reconnect_seconds: float = 30.0
    # Room for 200 connections each waiting on a 1,000-event /batch body, twice over. Queued
    # batches are compressed (16 bytes per event in the load benchmark), so they take little room.
    queue_events: int = 500_000
    queue_bytes: int = 256 * 1024 * 1024
    linger_ms: float = 2.0
    batch_events: int = 1000

    @property
    def log_dir(self) -> Path:
        """Directory of the local log."""
        return self.data_dir / "log"

    @property
    def spool_dir(self) -> Path:
        """Directory of the producer's spool for a remote broker."""
        return self.data_dir / "spool"

    @classmethod
    def from_env(cls, env: Env | None = None) -> BrokerSettings:
        """Build the settings from the environment; ConfigError names a bad variable."""
        env = env if env is not None else load_env()
        iggy_partitions = env.int("IGGY_PARTITIONS", 24, minimum=1, maximum=1000)
        iggy_url = env.str("IGGY_URL", "127.0.0.1:8090") or "127.0.0.1:8090"
        _check_host_port("IGGY_URL", iggy_url)
        return cls(
            backend=env.choice("BROKER", "local", BACKENDS),
            data_dir=env.path("TRACKER_DATA_DIR", ".tracker"),
            partitions=env.int("BROKER_PARTITIONS", iggy_partitions, minimum=1, maximum=1000),
            local_sync=env.choice("LOCAL_LOG_SYNC", "full", ("normal", "full")),
            local_busy_timeout_ms=env.int("LOCAL_LOG_BUSY_TIMEOUT_MS", 30_000, minimum=0),
            local_threads=env.int("LOCAL_LOG_THREADS", 4, minimum=1, maximum=64),
            session_timeout_seconds=env.float("BROKER_SESSION_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            retention_consumed_seconds=env.float(
                "LOCAL_LOG_RETENTION_SECONDS", 3600.0, minimum=0.0
            ),
            retention_max_age_seconds=env.float(
                "LOCAL_LOG_MAX_AGE_SECONDS", 7 * 86400.0, minimum=0.0
            ),
            retention_max_bytes=env.int("LOCAL_LOG_MAX_PARTITION_BYTES", 0, minimum=0),
            retention_interval_seconds=env.float(
                "LOCAL_LOG_RETENTION_INTERVAL_SECONDS", 60.0, minimum=0.0
            ),
            iggy_url=iggy_url,
            iggy_username=env.str("IGGY_USERNAME", "iggy") or "iggy",
            iggy_password=env.str("IGGY_PASSWORD", "iggy") or "iggy",
            iggy_stream=env.str("IGGY_STREAM", "tracker") or "tracker",
            iggy_timeout_seconds=env.float("IGGY_TIMEOUT_SECONDS", 5.0, minimum=0.1),
            reconnect_seconds=env.float("BROKER_RECONNECT_SECONDS", 30.0, minimum=0.01),
            queue_events=env.int("PRODUCER_QUEUE_EVENTS", 500_000, minimum=1),
            queue_bytes=env.int("PRODUCER_QUEUE_BYTES", 256 * 1024 * 1024, minimum=1024),
            linger_ms=env.float("PRODUCER_LINGER_MS", 2.0, minimum=0.0),
            batch_events=env.int("PRODUCER_BATCH_EVENTS", 1000, minimum=1, maximum=100_000),
        )


def _check_host_port(variable: str, value: str) -> None:
    """Raise ConfigError unless `value` reads as host:port with a port in 1..65535."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            variable, f"expected host:port such as 127.0.0.1:8090, got {value[:50]!r}"
        )
