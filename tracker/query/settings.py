"""Settings of the query tiers and the router, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tracker.consumers.archiver import ArchiveSettings
from tracker.errors import ConfigError
from tracker.settings import Env

__all__ = ["QuerySettings"]

_SCHEMA_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, slots=True)
class QuerySettings:
    """Tier locations, retention windows and the limits on one query."""

    hot_dsn: str | None = field(repr=False)
    hot_schema: str
    hot_retention_days: int
    warm_dir: Path
    warm_retention_days: int
    archive_uri: str
    archive_storage_options: dict[str, str] = field(repr=False)
    query_timeout_seconds: float
    max_query_hours: int
    max_groups: int
    cursor_key: bytes | None = field(repr=False)

    @classmethod
    def from_env(cls, env: Env) -> QuerySettings:
        """Build the settings; a bad value raises ConfigError naming the variable."""
        data_dir = env.path("TRACKER_DATA_DIR", ".tracker")
        # The archiver owns how ARCHIVE_URI (or R2_*) maps to a table and its credentials.
        archive = ArchiveSettings.from_env(env)
        hot_schema = env.str("HOT_SCHEMA", "public") or "public"
        # The schema name is spliced into SQL as an identifier, so only plain names pass.
        if not set(hot_schema) <= _SCHEMA_CHARS or hot_schema[0].isdigit() or len(hot_schema) > 63:
            raise ConfigError(
                "HOT_SCHEMA", "expected a lowercase identifier of [a-z0-9_], at most 63 characters"
            )
        return cls(
            hot_dsn=env.str("HOT_DSN"),
            hot_schema=hot_schema,
            hot_retention_days=env.int("HOT_RETENTION_DAYS", 7, minimum=1, maximum=3650),
            warm_dir=env.path("WARM_DIR", data_dir / "warm"),
            warm_retention_days=env.int("WARM_RETENTION_DAYS", 30, minimum=1, maximum=3650),
            archive_uri=archive.table_uri("events"),
            archive_storage_options=dict(archive.storage_options),
            query_timeout_seconds=env.float("QUERY_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            max_query_hours=env.int("MAX_QUERY_HOURS", 24 * 366, minimum=1),
            max_groups=env.int("QUERY_MAX_GROUPS", 10_000, minimum=1, maximum=1_000_000),
            cursor_key=env.hex_key("QUERY_CURSOR_KEY", length=32),
        )
