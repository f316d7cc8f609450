"""The hot tier writer: `events-clean` into the `events` table of PostgreSQL or RisingWave.

Table layout, indexes, partitions and the dialect differences are documented in
`tracker.hot.schema`. The table is created or migrated when the writer starts.

PostgreSQL path: `tracker._core.encode_hot_copy` checks the batch's raw documents
and encodes the valid ones as one binary COPY stream, so no Python object is built
per event. The stream is copied straight into the partitioned table in one
transaction. When that fails on the unique key, the batch repeats stored events (a
redelivery or a replay): it is then copied into a session temp table and merged
with `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, so it inserts nothing twice.
Batches keep taking the merge path until one merge inserts every row. A lost
connection (a database restart, a network failure) raises RetryableSinkError, and
the runtime retries the batch after a backoff on a fresh connection. A batch the
database rejects as data (for example a string it cannot store) is written again
row by row, and only the rows that still fail go to dead letters.

Settings: HOT_DSN (required), HOT_SCHEMA (default public), HOT_RETENTION_DAYS (7),
HOT_PARTITIONS_AHEAD_DAYS (3), HOT_DIALECT (auto, postgres or risingwave) and
HOT_SOURCE_TOPIC (events-clean).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from tracker._core import HotCopy, encode_hot_copy
from tracker.broker.base import TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY
from tracker.consumers.events import STRING_FIELDS
from tracker.consumers.runtime import Batch, Sink, SinkContext
from tracker.errors import ConfigError, RetryableSinkError
from tracker.hot.schema import COLUMNS, DAY_MS, DIALECTS, Dialect, dialect_for, partition_day
from tracker.settings import Env

__all__ = ["HotWriter", "HotWriterSettings", "create_sink"]

logger = logging.getLogger(__name__)

# Errors that mean the connection, not the data, failed; the batch is retried.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    # Raised when an interrupted operation, such as a server restart mid-COPY, left the
    # connection's protocol state broken. Only a new connection recovers from it.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.LockNotAvailableError,
)
# Errors that mean some row's content was rejected; rows are then written one by one.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)
MAINTENANCE_SECONDS = 3600.0
# Lock id (any constant) that serialises partition DDL between concurrent writers.
PARTITION_LOCK_ID = 0x7472_6B68_6F74


@dataclass(frozen=True, slots=True)
class HotWriterSettings:
    """Connection, schema, retention and dialect of the hot tier writer."""

    dsn: str
    schema: str = "public"
    retention_days: int = 7
    partitions_ahead_days: int = 3
    dialect: str = "auto"
    source_topic: str = TOPIC_EVENTS_CLEAN
    connect_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Env) -> HotWriterSettings:
        dsn = env.str("HOT_DSN", required=True)
        assert dsn is not None
        schema = env.str("HOT_SCHEMA", "public") or "public"
        if not re.fullmatch(r"[a-z0-9_]{1,63}", schema):
            raise ConfigError(
                "HOT_SCHEMA", f"expected 1 to 63 characters of [a-z0-9_], got {schema[:50]!r}"
            )
        return cls(
            dsn=dsn,
            schema=schema,
            retention_days=env.int("HOT_RETENTION_DAYS", 7, minimum=1, maximum=3650),
            partitions_ahead_days=env.int("HOT_PARTITIONS_AHEAD_DAYS", 3, minimum=1, maximum=366),
            dialect=env.choice("HOT_DIALECT", "auto", ("auto", *DIALECTS)),
            source_topic=env.choice(
                "HOT_SOURCE_TOPIC",
                TOPIC_EVENTS_CLEAN,
                (TOPIC_EVENTS, TOPIC_EVENTS_CLEAN, TOPIC_EVENTS_REPLAY),
            ),
            connect_timeout_seconds=env.float("HOT_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        )


def create_sink(env: Env) -> HotWriter:
    return HotWriter(HotWriterSettings.from_env(env))


def _clean_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, so it is dropped rather than failing the row.
    return value.replace("\x00", "") if "\x00" in value else value


class HotWriter(Sink):
    """Writes clean events to the hot table, idempotently on `event_id`."""

    name = "hot-writer"
    # The extension builds the rows from the raw documents. The rare row-by-row
    # fallback parses the few documents it needs itself.
    decode_events = False

    def __init__(self, settings: HotWriterSettings) -> None:
        self.settings = settings
        self.source_topic = settings.source_topic
        self._connection: asyncpg.Connection | None = None
        self._dialect: Dialect | None = None
        self._partitions: set[int] = set()
        self._last_maintenance = float("-inf")
        self.skipped_expired = 0
        # False after a COPY hit a stored event_id, until a merge finds no repeats.
        self._copy_direct = True

    async def open(self, context: SinkContext) -> None:
        # Retries inside process() cover a database that is down at start.
        try:
            await self._connect()
        except CONNECTION_ERRORS as error:
            logger.warning(
                "Hot database unreachable at start; retrying with the first batch.",
                extra={"error": repr(error)[:300]},
            )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close(timeout=5)
            self._connection = None

    async def process(self, batch: Batch) -> None:
        now_ms = int(time.time() * 1000)
        copy = encode_hot_copy(
            batch.raw,
            # Older than the hot tier's retention: the cold tier stores it, and the hot tier would drop it.
            cutoff_ms=now_ms - self.settings.retention_days * DAY_MS,
            horizon_ms=now_ms + 366 * DAY_MS,
        )
        for index, reason in copy.rejected:
            batch.dead_letter(index, reason)
        self.skipped_expired += copy.expired
        if not copy.rows:
            return
        try:
            connection = await self._connect()
            await self._maintain(connection, set(copy.days))
        except CONNECTION_ERRORS as error:
            await self._discard_connection()
            raise RetryableSinkError(f"hot database write failed: {error!r}"[:300]) from error
        try:
            await self._write(connection, copy, batch)
        except CONNECTION_ERRORS as error:
            await self._discard_connection()
            raise RetryableSinkError(f"hot database write failed: {error!r}"[:300]) from error
        except DATA_ERRORS as error:
            logger.warning(
                "Hot batch rejected; writing rows one by one.", extra={"error": repr(error)[:300]}
            )
            try:
                await self._write_one_by_one(connection, copy.indices, batch)
            except CONNECTION_ERRORS as retry_error:
                await self._discard_connection()
                raise RetryableSinkError(
                    f"hot database write failed: {retry_error!r}"[:300]
                ) from retry_error

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        connection = await asyncpg.connect(
            self.settings.dsn, timeout=self.settings.connect_timeout_seconds
        )
        try:
            version = await connection.fetchval("SELECT version()")
            dialect = dialect_for(version, self.settings.dialect, self.settings.schema)
            await self._migrate(connection, dialect)
        except BaseException:
            await connection.close(timeout=5)
            raise
        self._connection = connection
        self._dialect = dialect
        logger.info(
            "Connected to the hot database.",
            extra={"dialect": dialect.name, "schema": self.settings.schema},
        )
        return connection

    async def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def _migrate(self, connection: asyncpg.Connection, dialect: Dialect) -> None:
        async with connection.transaction():
            if dialect.partitioned:
                await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
            for statement in dialect.create_statements():
                await connection.execute(statement)
        if dialect.partitioned:
            await connection.execute(dialect.staging_statement())
        self._partitions.clear()
        self._last_maintenance = float("-inf")

    async def _maintain(self, connection: asyncpg.Connection, days: set[int]) -> None:
        """Create partitions for `days` and the days ahead; drop expired ones once an hour."""
        dialect = self._dialect
        assert dialect is not None
        now_ms = int(time.time() * 1000)
        hourly = time.monotonic() - self._last_maintenance >= MAINTENANCE_SECONDS
        if not dialect.partitioned:
            if hourly:
                cutoff = now_ms - self.settings.retention_days * DAY_MS
                await connection.execute(dialect.delete_before(), cutoff)
                self._last_maintenance = time.monotonic()
            return

        needed = set(days)
        if hourly:
            today = now_ms - now_ms % DAY_MS
            needed.update(
                today + offset * DAY_MS for offset in range(self.settings.partitions_ahead_days + 1)
            )
        missing = sorted(needed - self._partitions)
        if missing:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
                for day in missing:
                    await connection.execute(dialect.create_partition(day))
            self._partitions.update(missing)
        if hourly:
            await self._drop_expired(connection, dialect, now_ms)
            self._last_maintenance = time.monotonic()

    async def _drop_expired(
        self, connection: asyncpg.Connection, dialect: Dialect, now_ms: int
    ) -> None:
        cutoff = now_ms - self.settings.retention_days * DAY_MS
        names = [
            row[0]
            for row in await connection.fetch(dialect.list_partitions(), self.settings.schema)
        ]
        expired = [
            name
            for name in names
            if (day := partition_day(name)) is not None and day + DAY_MS <= cutoff
        ]
        if not expired:
            return
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
            for name in expired:
                await connection.execute(dialect.drop_partition(name))
        self._partitions = {day for day in self._partitions if day + DAY_MS > cutoff}
        logger.info("Dropped expired hot partitions.", extra={"partitions": expired})

    async def _write(self, connection: asyncpg.Connection, copy: HotCopy, batch: Batch) -> None:
        dialect = self._dialect
        assert dialect is not None
        if not dialect.partitioned:
            rows = [_row(orjson.loads(batch.raw[index])) for index in copy.indices]
            await connection.executemany(dialect.insert_row(), rows)
            return

        # A memoryview, because asyncpg would take plain bytes for a file path.
        payload = memoryview(copy.payload)
        if self._copy_direct:
            try:
                async with connection.transaction():
                    await connection.copy_to_table(
                        "events",
                        schema_name=self.settings.schema,
                        source=payload,
                        columns=COLUMNS,
                        format="binary",
                    )
                return
            except asyncpg.exceptions.UniqueViolationError:
                self._copy_direct = False
                logger.info(
                    "Hot batch repeats stored events; merging through the staging table.",
                    extra={"partition": batch.partition, "offset": batch.first_offset},
                )
        async with connection.transaction():
            await connection.copy_to_table(
                "hot_staging", source=payload, columns=COLUMNS, format="binary"
            )
            status = await connection.execute(dialect.merge_staging())
        # The status is "INSERT 0 <rows>". When every row was new, the repeats are over.
        self._copy_direct = int(status.rsplit(" ", 1)[-1]) == copy.rows

    async def _write_one_by_one(
        self, connection: asyncpg.Connection, indices: list[int], batch: Batch
    ) -> None:
        dialect = self._dialect
        assert dialect is not None
        statement = dialect.insert_row()
        for index in indices:
            try:
                await connection.execute(statement, *_row(orjson.loads(batch.raw[index])))
            except DATA_ERRORS as error:
                batch.dead_letter(index, f"rejected by the hot database: {error}"[:200])


def _row(event: dict[str, Any]) -> tuple[Any, ...]:
    """Return the column values of a checked event in COLUMNS order, for parameterised INSERTs."""
    params = event["params"]
    return (
        event["event_id"],
        event["event_type"],
        event["timestamp"],
        params["key_prefix"],
        *(_clean_text(event.get(name, "")) for name in STRING_FIELDS),
        _params_without_nul(params),
    )


def _params_without_nul(params: dict[str, str]) -> str:
    # jsonb rejects the \u0000 escape, so NUL characters are dropped from keys and values.
    cleaned = {key.replace("\x00", ""): value.replace("\x00", "") for key, value in params.items()}
    return orjson.dumps(cleaned).decode()
