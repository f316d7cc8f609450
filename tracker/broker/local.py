"""The embedded broker: a partitioned, durable log of record batches on SQLite in WAL mode.

Layout: `<log dir>/<topic>/p<partition>.db` stores one partition's messages,
its next offset, its leases and the committed offset of every consumer group,
so a commit is one atomic statement next to the data it points into.
`<log dir>/<topic>/groups.db` stores consumer-group membership. SQLite allows
one writer per file, so one file per partition lets writers of different
partitions commit and fsync in parallel. With `synchronous=FULL` and four
writer processes that was about 3x faster than one file per topic
(`bench/broker_layout.py`, results in `bench/results/broker.md`).

Durability: every append runs in `BEGIN IMMEDIATE ... COMMIT`, and `publish`
returns after COMMIT. With `synchronous=NORMAL` a committed append survives a
crash or kill -9 of any process, because the WAL is in the OS page cache. With
`synchronous=FULL`, the default, the WAL is fsynced on each commit, so the
append also survives a power loss or kernel crash.

The async methods run SQLite calls on a private thread pool, so the calling
event loop never blocks on disk or on another process's write lock.
`publish_blocking` is the exception, for a caller that may block its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tracker.broker._sqlite import (
    GROUPS_SCHEMA,
    PARTITION_SCHEMA,
    Database,
    delete_expired,
    delete_through,
)
from tracker.broker.base import Broker, Message
from tracker.broker.settings import BrokerSettings
from tracker.errors import BrokerError

__all__ = ["LocalBroker", "PartitionStats", "record_batch_event_count"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Topic and group names become file names and table keys.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def record_batch_event_count(payload: bytes) -> int:
    """Return the event count in a record batch header, or 0 when the bytes are not one.

    The header is `u8 version = 1 || u32 event count` (docs/formats.md). The
    broker reads only this header and stores any payload unchanged.
    """
    if len(payload) < 5 or payload[0] != 1:
        return 0
    return int(struct.unpack_from(">I", payload, 1)[0])


@dataclass(frozen=True, slots=True)
class PartitionStats:
    """Size of one partition: stored messages, their events and payload bytes."""

    messages: int
    events: int
    bytes: int
    first_offset: int | None
    end_offset: int | None


class LocalBroker(Broker):
    """The `local` backend: SQLite files under `settings.log_dir` (or an explicit `root`)."""

    backend = "local"

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        root: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.partitions = settings.partitions
        self.root = Path(root) if root is not None else settings.log_dir
        self._databases: dict[tuple[str, int], Database] = {}
        self._open_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._closed = False

    # Lifecycle.

    async def connect(self) -> None:
        """Create the log directory and start the retention task when it is enabled."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BrokerError(
                f"cannot create the local log directory {self.root}: {error}"
            ) from error
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.settings.local_threads, thread_name_prefix="local-log"
            )
        self._closed = False
        if self.settings.retention_interval_seconds > 0 and self._retention_task is None:
            self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def close(self) -> None:
        """Stop retention, wait for running SQLite calls and close every file."""
        self._closed = True
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
            self._retention_task = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        with self._open_lock:
            for database in self._databases.values():
                database.close()
            self._databases.clear()

    async def healthy(self) -> bool:
        """Return whether the log directory is writable now."""
        try:
            return await self._run(self._probe)
        except (OSError, sqlite3.Error, BrokerError):
            return False

    def _probe(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root.is_dir()

    # Publishing and reading.

    async def publish(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        """Append payloads to one partition in one durable transaction."""
        await self.append(topic, partition, payloads)

    async def append(self, topic: str, partition: int, payloads: Sequence[bytes]) -> int | None:
        """Append like `publish` and return the offset of the last payload (None if empty)."""
        self._check_partition(partition)
        if not payloads:
            return None
        return await self._run(self._append, topic, partition, _rows(payloads))

    def publish_blocking(self, topic: str, partition: int, payloads: Sequence[bytes]) -> None:
        """Append like `publish`, but on the calling thread, and return after COMMIT.

        For a caller that owns a thread it may block, such as the producer: it
        saves the two thread switches of the pool, which on a busy machine cost
        more than the append. Never call it from an event loop that serves others.
        """
        self._check_partition(partition)
        if self._executor is None:
            raise BrokerError("the local broker is not connected; call connect() first")
        if not payloads:
            return
        try:
            self._append(topic, partition, _rows(payloads))
        except (sqlite3.Error, OSError) as error:
            raise BrokerError(f"local log operation failed: {error}") from error

    def _append(self, topic: str, partition: int, payloads: list[bytes]) -> int:
        database = self._database(topic, partition)
        now = self._now_ms()
        size = sum(len(payload) for payload in payloads)
        with database.lock, database.transaction() as connection:
            (first,) = connection.execute(
                "SELECT next_offset FROM log_state WHERE id = 0"
            ).fetchone()
            connection.executemany(
                "INSERT INTO messages (msg_offset, timestamp_ms, events, payload) VALUES (?, ?, ?, ?)",
                [
                    (first + index, now, record_batch_event_count(payload), payload)
                    for index, payload in enumerate(payloads)
                ],
            )
            connection.execute(
                "UPDATE log_state SET next_offset = ?, total_bytes = total_bytes + ? WHERE id = 0",
                (first + len(payloads), size),
            )
        return first + len(payloads) - 1

    async def read(
        self, topic: str, partition: int, start: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` from offset `start` on, outside any group."""
        self._check_partition(partition)
        if start < 0:
            raise BrokerError(f"start offset must be at least 0, got {start}")
        if max_messages <= 0:
            return []
        return await self._run(self._read, topic, partition, start, max_messages)

    def _read(self, topic: str, partition: int, start: int, max_messages: int) -> list[Message]:
        database = self._database(topic, partition)
        with database.lock:
            rows = database.connection.execute(
                "SELECT msg_offset, timestamp_ms, payload FROM messages"
                " WHERE msg_offset >= ? ORDER BY msg_offset LIMIT ?",
                (start, max_messages),
            ).fetchall()
        return [
            Message(partition, offset, timestamp, payload) for offset, timestamp, payload in rows
        ]

    async def poll(
        self, topic: str, group: str, partition: int, max_messages: int
    ) -> list[Message]:
        """Return up to `max_messages` after the group's committed offset, oldest first."""
        self._check_partition(partition)
        _check_name("group", group)
        if max_messages <= 0:
            return []
        return await self._run(self._poll, topic, group, partition, max_messages)

    def _poll(self, topic: str, group: str, partition: int, max_messages: int) -> list[Message]:
        committed = self._committed(topic, group, partition)
        start = 0 if committed is None else committed + 1
        return self._read(topic, partition, start, max_messages)

    async def end_offset(self, topic: str, partition: int) -> int | None:
        """Return the offset of the newest message ever appended, or None if none was."""
        self._check_partition(partition)
        return await self._run(self._end_offset, topic, partition)

    def _end_offset(self, topic: str, partition: int) -> int | None:
        database = self._database(topic, partition)
        with database.lock:
            (next_offset,) = database.connection.execute(
                "SELECT next_offset FROM log_state WHERE id = 0"
            ).fetchone()
        return None if next_offset == 0 else next_offset - 1

    async def stats(self, topic: str, partition: int) -> PartitionStats:
        """Return how many messages, events and bytes the partition stores now."""
        self._check_partition(partition)
        return await self._run(self._stats, topic, partition)

    def _stats(self, topic: str, partition: int) -> PartitionStats:
        database = self._database(topic, partition)
        with database.lock:
            count, events, first, last = database.connection.execute(
                "SELECT count(*), coalesce(sum(events), 0), min(msg_offset), max(msg_offset)"
                " FROM messages"
            ).fetchone()
            (size,) = database.connection.execute(
                "SELECT total_bytes FROM log_state WHERE id = 0"
            ).fetchone()
        return PartitionStats(count, events, size, first, last)

    # Consumer groups: offsets.

    async def commit(self, topic: str, group: str, partition: int, offset: int) -> None:
        """Store `offset` as the last message the group has fully processed."""
        self._check_partition(partition)
        _check_name("group", group)
        if offset < 0:
            raise BrokerError(f"offset must be at least 0, got {offset}")
        await self._run(self._commit, topic, group, partition, offset)

    def _commit(self, topic: str, group: str, partition: int, offset: int) -> None:
        database = self._database(topic, partition)
        with database.lock, database.transaction() as connection:
            (next_offset,) = connection.execute(
                "SELECT next_offset FROM log_state WHERE id = 0"
            ).fetchone()
            if offset >= next_offset:
                raise BrokerError(
                    f"cannot commit offset {offset} of {topic}/{partition}:"
                    f" the newest offset is {next_offset - 1}"
                )
            connection.execute(
                "INSERT INTO group_offsets (group_name, committed, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (group_name) DO UPDATE SET committed = excluded.committed,"
                " updated_ms = excluded.updated_ms",
                (group, offset, self._now_ms()),
            )

    async def committed(self, topic: str, group: str, partition: int) -> int | None:
        """Return the group's committed offset, or None before its first commit."""
        self._check_partition(partition)
        _check_name("group", group)
        return await self._run(self._committed, topic, group, partition)

    def _committed(self, topic: str, group: str, partition: int) -> int | None:
        database = self._database(topic, partition)
        with database.lock:
            row = database.connection.execute(
                "SELECT committed FROM group_offsets WHERE group_name = ?", (group,)
            ).fetchone()
        return None if row is None else int(row[0])

    # Consumer groups: membership.

    async def join_group(self, topic: str, group: str, member: str) -> None:
        """Register `member` (again, as a heartbeat) and forget members long gone."""
        _check_name("group", group)
        _check_member(member)
        await self._run(self._join_group, topic, group, member)

    def _join_group(self, topic: str, group: str, member: str) -> None:
        database = self._groups(topic)
        now = self._now_ms()
        forget_before = now - int(self.settings.session_timeout_seconds * 1000) * 10
        with database.lock, database.transaction() as connection:
            connection.execute(
                "INSERT INTO members (group_name, member, heartbeat_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (group_name, member) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
                (group, member, now),
            )
            connection.execute(
                "DELETE FROM members WHERE group_name = ? AND heartbeat_ms < ?",
                (group, forget_before),
            )

    async def leave_group(self, topic: str, group: str, member: str) -> None:
        """Remove `member` so its partitions pass to the others at once."""
        _check_name("group", group)
        _check_member(member)
        await self._run(self._leave_group, topic, group, member)

    def _leave_group(self, topic: str, group: str, member: str) -> None:
        database = self._groups(topic)
        with database.lock, database.transaction() as connection:
            connection.execute(
                "DELETE FROM members WHERE group_name = ? AND member = ?", (group, member)
            )

    async def live_members(self, topic: str, group: str) -> list[str]:
        """Return the sorted ids of members that heartbeated within the session timeout."""
        _check_name("group", group)
        return await self._run(self._live_members, topic, group)

    def _live_members(self, topic: str, group: str) -> list[str]:
        database = self._groups(topic)
        since = self._now_ms() - int(self.settings.session_timeout_seconds * 1000)
        with database.lock:
            rows = database.connection.execute(
                "SELECT member FROM members WHERE group_name = ? AND heartbeat_ms >= ?"
                " ORDER BY member",
                (group, since),
            ).fetchall()
        return [row[0] for row in rows]

    async def assigned_partitions(self, topic: str, group: str, member: str) -> list[int]:
        """Return the partitions `member` owns: every n-th partition among the live members.

        Members are sorted by id and member i of n owns partitions p with
        p % n == i. A member that missed the session timeout owns nothing, and
        its partitions pass to the others on their next call.
        """
        _check_member(member)
        members = await self.live_members(topic, group)
        if member not in members:
            return []
        index = members.index(member)
        return [p for p in range(self.partitions) if p % len(members) == index]

    # Leases: one owner at a time per partition and lease name, across processes.

    async def acquire_lease(
        self, topic: str, partition: int, name: str, owner: str, seconds: float
    ) -> bool:
        """Take or renew the lease `name` on a partition for `seconds`; return whether `owner` holds it.

        The lease is free when it was never taken, its owner released it, or it expired.
        """
        self._check_partition(partition)
        _check_name("lease", name)
        _check_member(owner)
        return await self._run(self._acquire_lease, topic, partition, name, owner, seconds)

    def _acquire_lease(
        self, topic: str, partition: int, name: str, owner: str, seconds: float
    ) -> bool:
        database = self._database(topic, partition)
        now = self._now_ms()
        with database.lock, database.transaction() as connection:
            row = connection.execute(
                "SELECT owner, expires_ms FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            connection.execute(
                "INSERT INTO leases (name, owner, expires_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires_ms = excluded.expires_ms",
                (name, owner, now + int(seconds * 1000)),
            )
        return True

    async def release_lease(self, topic: str, partition: int, name: str, owner: str) -> None:
        """Give up the lease `name` if `owner` holds it."""
        self._check_partition(partition)
        await self._run(self._release_lease, topic, partition, name, owner)

    def _release_lease(self, topic: str, partition: int, name: str, owner: str) -> None:
        database = self._database(topic, partition)
        with database.lock, database.transaction() as connection:
            connection.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # Retention.

    async def apply_retention(self, topic: str, now_ms: int | None = None) -> int:
        """Delete expired messages from every partition of `topic`; return how many went."""
        _check_name("topic", topic)
        deleted = 0
        for partition in range(self.partitions):
            if not (self.root / topic / _partition_file(partition)).exists():
                continue
            deleted += await self._run(self._apply_retention, topic, partition, now_ms)
        return deleted

    def _apply_retention(self, topic: str, partition: int, now_ms: int | None) -> int:
        """Delete expired messages of one partition, one small transaction at a time."""
        now = now_ms if now_ms is not None else self._now_ms()
        database = self._database(topic, partition)
        deleted = 0
        while True:
            with database.lock, database.transaction() as connection:
                count = delete_expired(connection, self.settings, now)
            if count == 0:
                return deleted
            deleted += count

    async def truncate(self, topic: str, partition: int, through: int) -> int:
        """Delete messages up to and including offset `through`; return how many went."""
        self._check_partition(partition)
        return await self._run(self._truncate, topic, partition, through)

    def _truncate(self, topic: str, partition: int, through: int) -> int:
        database = self._database(topic, partition)
        with database.lock, database.transaction() as connection:
            count, _ = delete_through(connection, through)
        return count

    async def _retention_loop(self) -> None:
        interval = self.settings.retention_interval_seconds
        while not self._closed:
            await asyncio.sleep(interval)
            for topic in self._topics():
                try:
                    deleted = await self.apply_retention(topic)
                except (sqlite3.Error, OSError) as error:
                    logger.warning(
                        "Local log retention failed; retrying next interval.",
                        extra={"topic": topic, "error": str(error)},
                    )
                    continue
                if deleted:
                    logger.info(
                        "Local log retention deleted messages.",
                        extra={"topic": topic, "messages": deleted},
                    )

    def _topics(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            path.name for path in self.root.iterdir() if path.is_dir() and _NAME.match(path.name)
        )

    # Plumbing.

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise BrokerError("the local broker is not connected; call connect() first")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except (sqlite3.Error, OSError) as error:
            raise BrokerError(f"local log operation failed: {error}") from error

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise BrokerError(f"partition must be in 0..{self.partitions - 1}, got {partition}")

    def _database(self, topic: str, partition: int) -> Database:
        return self._open((topic, partition), topic, _partition_file(partition), PARTITION_SCHEMA)

    def _groups(self, topic: str) -> Database:
        return self._open((topic, -1), topic, "groups.db", GROUPS_SCHEMA)

    def _open(self, key: tuple[str, int], topic: str, file_name: str, schema: str) -> Database:
        """Return the open database of `key`, opening and migrating its file on first use."""
        database = self._databases.get(key)
        if database is not None:
            return database
        _check_name("topic", topic)
        path = self.root / topic / file_name
        with self._open_lock:
            database = self._databases.get(key)
            if database is None:
                try:
                    database = Database(
                        path, schema, self.settings.local_sync, self.settings.local_busy_timeout_ms
                    )
                except sqlite3.DatabaseError as error:
                    raise BrokerError(
                        f"cannot open local log file {path}: {error}; restore it from a backup"
                        " or move it away to start that partition empty"
                    ) from error
                self._databases[key] = database
        return database


def _rows(payloads: Sequence[bytes]) -> list[bytes]:
    rows = []
    for payload in payloads:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise BrokerError(f"payloads must be bytes, got {type(payload).__name__}")
        rows.append(bytes(payload))
    return rows


def _partition_file(partition: int) -> str:
    return f"p{partition:04d}.db"


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BrokerError(
            f"invalid {kind} name {str(name)[:50]!r}: expected 1 to 100 characters of"
            " [A-Za-z0-9._-] starting with a letter or digit"
        )


def _check_member(member: str) -> None:
    if not isinstance(member, str) or not 0 < len(member) <= 200:
        raise BrokerError("invalid member id: expected 1 to 200 characters")
