"""SQLite plumbing of the local log: schemas, one connection per file, retention deletes."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

from tracker.broker.settings import BrokerSettings
from tracker.sqlite_wal import enable_wal

__all__ = ["GROUPS_SCHEMA", "PARTITION_SCHEMA", "Database", "delete_expired", "delete_through"]

PARTITION_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    msg_offset INTEGER PRIMARY KEY,
    timestamp_ms INTEGER NOT NULL,
    events INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_offset INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO log_state (id, next_offset, total_bytes) VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_name TEXT PRIMARY KEY,
    committed INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
"""

GROUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    group_name TEXT NOT NULL,
    member TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (group_name, member)
);
"""


class Database:
    """One SQLite file with its connection, used by one thread at a time.

    Write transactions also hold an exclusive flock on `<file>.lock`. SQLite's
    busy handler polls a held write lock with sleeps that grow from 1 to 100
    ms, so two processes appending to one partition kept waiting far longer
    than the other's commit took. The kernel wakes the next flock waiter as
    soon as the holder commits. A holder that dies releases the flock with its
    descriptor, but a writer waits for the flock as long as a live holder's
    transaction runs: the busy timeout applies only once it holds the flock.
    """

    def __init__(self, path: Path, schema: str, sync: str, busy_timeout_ms: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._write_lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self.connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        enable_wal(self.connection, busy_timeout_ms)
        self.connection.execute(f"PRAGMA synchronous = {sync.upper()}")
        with self.transaction():
            for statement in filter(None, (s.strip() for s in schema.split(";"))):
                self.connection.execute(statement)

    def transaction(self) -> _Transaction:
        """Return a context manager running `BEGIN IMMEDIATE ... COMMIT` (ROLLBACK on error)."""
        return _Transaction(self.connection, self._write_lock)

    def close(self) -> None:
        with self.lock:
            self.connection.close()
            os.close(self._write_lock)


class _Transaction:
    def __init__(self, connection: sqlite3.Connection, write_lock: int) -> None:
        self.connection = connection
        self.write_lock = write_lock

    def __enter__(self) -> sqlite3.Connection:
        fcntl.flock(self.write_lock, fcntl.LOCK_EX)
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            fcntl.flock(self.write_lock, fcntl.LOCK_UN)
            raise
        return self.connection

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        try:
            if kind is None:
                self.connection.execute("COMMIT")
            else:
                self.connection.execute("ROLLBACK")
        finally:
            fcntl.flock(self.write_lock, fcntl.LOCK_UN)


def delete_expired(connection: sqlite3.Connection, settings: BrokerSettings, now_ms: int) -> int:
    """Delete up to `retention_batch_rows` expired messages inside the caller's transaction.

    A consumed message is one that every group that ever committed on the
    partition has committed past. It expires when it is older than
    `retention_consumed_seconds` or the partition is over `retention_max_bytes`.
    Any message expires once it is older than `retention_max_age_seconds`.
    Returns how many messages went.
    """
    (consumed_through,) = connection.execute("SELECT min(committed) FROM group_offsets").fetchone()
    (total_bytes,) = connection.execute("SELECT total_bytes FROM log_state WHERE id = 0").fetchone()
    conditions = []
    values: list[int] = []
    over_size = False
    if consumed_through is not None:
        over_size = 0 < settings.retention_max_bytes < total_bytes
        if over_size:
            conditions.append("msg_offset <= ?")
            values.append(consumed_through)
        else:
            conditions.append("(msg_offset <= ? AND timestamp_ms < ?)")
            values.extend(
                (consumed_through, now_ms - int(settings.retention_consumed_seconds * 1000))
            )
    if settings.retention_max_age_seconds > 0:
        conditions.append("timestamp_ms < ?")
        values.append(now_ms - int(settings.retention_max_age_seconds * 1000))
    if not conditions:
        return 0

    rows = connection.execute(
        "SELECT msg_offset, length(payload) FROM messages WHERE "
        + " OR ".join(conditions)
        + " ORDER BY msg_offset LIMIT ?",
        (*values, settings.retention_batch_rows),
    ).fetchall()
    if not rows:
        return 0
    if over_size:
        rows = _enough_to_free(rows, total_bytes - settings.retention_max_bytes)

    # Delete a prefix only, so the log never gets a hole in the middle.
    count, _ = delete_through(connection, rows[-1][0])
    return count


def _enough_to_free(rows: list[tuple[int, int]], excess: int) -> list[tuple[int, int]]:
    """Return the shortest prefix of (offset, size) rows whose sizes add up to `excess`."""
    freed = 0
    for index, (_, size) in enumerate(rows):
        freed += size
        if freed >= excess:
            return rows[: index + 1]
    return rows


def delete_through(connection: sqlite3.Connection, through: int) -> tuple[int, int]:
    """Delete messages up to offset `through` inside the caller's transaction; return (count, bytes)."""
    size = connection.execute(
        "SELECT coalesce(sum(length(payload)), 0) FROM messages WHERE msg_offset <= ?", (through,)
    ).fetchone()[0]
    count = connection.execute("DELETE FROM messages WHERE msg_offset <= ?", (through,)).rowcount
    connection.execute(
        "UPDATE log_state SET total_bytes = max(total_bytes - ?, 0) WHERE id = 0", (size,)
    )
    return count, size
