"""Hot tier table layout and the SQL differences between PostgreSQL and RisingWave.

Table `events` in HOT_SCHEMA, one row per clean event:

| column            | PostgreSQL | RisingWave | content                                    |
|-------------------|------------|------------|--------------------------------------------|
| `event_id`        | uuid       | varchar    | UUIDv7 of the event                        |
| `event_type`      | text       | varchar    | as on the wire                             |
| `timestamp`       | bigint     | bigint     | Unix milliseconds, set by the server       |
| `key_prefix`      | text       | varchar    | tenant, copied from `params.key_prefix`    |
| `ip` ... `request_host` | text | varchar    | the six request fields, '' when absent     |
| `params`          | jsonb      | jsonb      | the whole params object, `key_prefix` too  |

PostgreSQL:
- declarative range partitions on `timestamp`, one per UTC day, named
  `events_YYYYMMDD`. They are created ahead of time and on demand, and
  a partition is dropped whole once its day ends before the retention cutoff,
  so retention never runs a DELETE;
- `UNIQUE (event_id, timestamp)`, because a unique constraint on a partitioned
  table must contain the partition key. The server stamps an event's timestamp
  once, so this is uniqueness of `event_id`. A batch is copied straight in and
  only a batch that repeats stored events is merged with `ON CONFLICT DO NOTHING`;
- indexes: GIN `jsonb_path_ops` on `params`, which serves the param filter
  `params @> '{"k":"v"}'`, and btree `(key_prefix, timestamp, event_type)`, which
  serves every tenant and time range and checks an event type filter inside the
  index. Each index slows writes: with the default `jsonb_ops` GIN and a second
  btree `(key_prefix, event_type, timestamp)`, PostgreSQL spent about 1.5 times
  the CPU per inserted event (see bench/results/consumers.md). Key existence,
  `params ? 'k'`, is not indexed, and the only query that uses it also filters by
  tenant and time.

NOTE: the CREATE statements skip indexes that exist by name, so a table created
with the older index definitions keeps them until an operator drops
`events_params_gin` and `events_tenant_time` and restarts the writer.

RisingWave has no declarative partitions, no GIN indexes and no INSERT ... ON
CONFLICT. This module therefore creates one table with `PRIMARY KEY (event_id)` and
the table-level `ON CONFLICT DO NOTHING` clause, which makes a repeated insert a
no-op. It adds a plain index on `(key_prefix, timestamp)` and applies retention
with a range `DELETE ... WHERE timestamp < cutoff`.

NOTE: the RisingWave statements follow RisingWave's CREATE TABLE and INSERT
documentation, but they have not run against a RisingWave server. The tests cover
PostgreSQL 15 only.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = [
    "COLUMNS",
    "DAY_MS",
    "DIALECTS",
    "Dialect",
    "dialect_for",
    "partition_day",
    "partition_name",
    "quote_identifier",
]

DIALECTS = ("postgres", "risingwave")
DAY_MS = 86_400_000
COLUMNS = (
    "event_id",
    "event_type",
    "timestamp",
    "key_prefix",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "request_path",
    "request_host",
    "params",
)
_PARTITION = re.compile(r"^events_(\d{8})$")


def quote_identifier(name: str) -> str:
    """Return `name` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def partition_name(day_start_ms: int) -> str:
    """Return the name of the partition holding the UTC day that starts at `day_start_ms`."""
    day = dt.datetime.fromtimestamp(day_start_ms / 1000, tz=dt.UTC)
    return f"events_{day:%Y%m%d}"


def partition_day(name: str) -> int | None:
    """Return the start of the day (Unix ms) of a partition name, or None for other tables."""
    match = _PARTITION.match(name)
    if match is None:
        return None
    try:
        day = dt.datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Dialect:
    """DDL and DML of one database flavour for the events table in `schema`."""

    name: str
    schema: str

    @property
    def partitioned(self) -> bool:
        return self.name == "postgres"

    @property
    def table(self) -> str:
        return f"{quote_identifier(self.schema)}.events"

    def create_statements(self) -> list[str]:
        """Return the idempotent statements that create the table and its indexes."""
        if self.name == "risingwave":
            return [
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                ' event_id varchar PRIMARY KEY, event_type varchar NOT NULL, "timestamp" bigint NOT NULL,'
                " key_prefix varchar NOT NULL, ip varchar, user_agent varchar, referer varchar,"
                " accept_language varchar, request_path varchar, request_host varchar, params jsonb NOT NULL"
                ") ON CONFLICT DO NOTHING",
                f'CREATE INDEX IF NOT EXISTS events_tenant_time ON {self.table} (key_prefix, "timestamp")',
            ]
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            ' event_id uuid NOT NULL, event_type text NOT NULL, "timestamp" bigint NOT NULL,'
            " key_prefix text NOT NULL, ip text NOT NULL, user_agent text NOT NULL, referer text NOT NULL,"
            " accept_language text NOT NULL, request_path text NOT NULL, request_host text NOT NULL,"
            " params jsonb NOT NULL,"
            ' CONSTRAINT events_event_id_key UNIQUE (event_id, "timestamp")'
            ') PARTITION BY RANGE ("timestamp")',
            f"CREATE INDEX IF NOT EXISTS events_params_gin ON {self.table}"
            " USING gin (params jsonb_path_ops)",
            f"CREATE INDEX IF NOT EXISTS events_tenant_time ON {self.table}"
            ' (key_prefix, "timestamp", event_type)',
        ]

    def create_partition(self, day_start_ms: int) -> str:
        """Return the statement that creates the partition of one UTC day (PostgreSQL only)."""
        name = quote_identifier(self.schema) + "." + quote_identifier(partition_name(day_start_ms))
        return (
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {self.table}"
            f" FOR VALUES FROM ({day_start_ms}) TO ({day_start_ms + DAY_MS})"
        )

    def list_partitions(self) -> str:
        """Return a query for the names of the table's partitions; takes the schema as $1."""
        return (
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid"
            " JOIN pg_class AS parent ON parent.oid = pg_inherits.inhparent"
            " JOIN pg_namespace ON pg_namespace.oid = parent.relnamespace"
            " WHERE parent.relname = 'events' AND pg_namespace.nspname = $1"
        )

    def drop_partition(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS {quote_identifier(self.schema)}.{quote_identifier(name)}"

    def delete_before(self) -> str:
        """Return the RisingWave retention statement; takes the cutoff in Unix ms as $1."""
        return f'DELETE FROM {self.table} WHERE "timestamp" < $1'

    def staging_statement(self) -> str:
        """Return the statement that creates this session's staging table (PostgreSQL only)."""
        return (
            "CREATE TEMP TABLE IF NOT EXISTS hot_staging ("
            ' event_id uuid, event_type text, "timestamp" bigint, key_prefix text, ip text,'
            " user_agent text, referer text, accept_language text, request_path text,"
            " request_host text, params jsonb) ON COMMIT DELETE ROWS"
        )

    def merge_staging(self) -> str:
        """Return the statement that moves staged rows into `events`, skipping known ids."""
        columns = ", ".join(quote_identifier(column) for column in COLUMNS)
        return (
            f"INSERT INTO {self.table} ({columns}) SELECT {columns} FROM hot_staging"
            " ON CONFLICT DO NOTHING"
        )

    def insert_row(self) -> str:
        """Return a one-row INSERT for the RisingWave path and for row-by-row fallbacks."""
        columns = ", ".join(quote_identifier(column) for column in COLUMNS)
        values = ", ".join(f"${index}" for index in range(1, len(COLUMNS) + 1))
        if self.name == "risingwave":
            return f"INSERT INTO {self.table} ({columns}) VALUES ({values})"
        return f"INSERT INTO {self.table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"


def dialect_for(version: str, configured: str, schema: str) -> Dialect:
    """Pick the dialect: `configured` unless it is "auto", else from `SELECT version()`."""
    if configured == "auto":
        configured = "risingwave" if "risingwave" in version.lower() else "postgres"
    return Dialect(configured, schema)
