"""A sqlite3-compatible wrapper over a `libsql_experimental` connection to a local file.

The registry code is written against Python's sqlite3 module. libsql_experimental
0.0.55 differs from it in ways that break that code, so `LibsqlConnection` fills
the gaps:

- Cursors are not iterable, and parameters must be a tuple (lists are rejected).
- Every error is a plain ValueError. Here, constraint failures become
  sqlite3.IntegrityError, other database errors sqlite3.OperationalError, and
  misuse sqlite3.ProgrammingError, so `except sqlite3.Error` keeps working.
- A statement with result columns runs lazily and only as far as its rows are
  fetched. Here, every statement is run to completion and its rows are stored,
  so an `INSERT ... RETURNING` whose rows are never fetched still inserts.
- `rowcount` counts the changes of earlier statements too. Here it is the
  number of rows changed by this INSERT, UPDATE or DELETE, and -1 otherwise,
  as in sqlite3.
- `Connection.executescript` drops errors. Here they are raised.
- The library holds the GIL while a statement runs, also while SQLite waits
  for a lock. A thread waiting for the write lock held by another thread of
  the same process therefore stops that thread from committing, and fails with
  "database is locked" when the busy timeout ends. Here, the connections of
  one process to one database take turns through a process-wide lock, held
  for one statement, or from BEGIN until the transaction ends.
- Integers outside the 32-bit range are bound as REAL by libsql_experimental.
  Columns with INTEGER affinity store such a value back as an exact integer,
  so they are accepted up to 2**53. Larger ones raise sqlite3.ProgrammingError
  because they would lose precision.

The connection is opened with `isolation_level=None`, so statements autocommit
unless the caller runs BEGIN and COMMIT itself, as the registry code does.
"""

from __future__ import annotations

import operator
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["LibsqlConnection", "LibsqlCursor", "connect_libsql", "positional_parameters"]

# libsql_experimental binds integers outside 32 bits as 64-bit floats, which represent
# integers exactly only up to this magnitude.
_EXACT_FLOAT_INT = 2**53

# Connections of this process per database file take turns through these.
_turn_locks: dict[str, threading.RLock] = {}
_turn_locks_guard = threading.Lock()

_DML = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def connect_libsql(path: str, *, lock_timeout_seconds: float = 10.0) -> LibsqlConnection:
    """Open the local file `path` through libSQL.

    `lock_timeout_seconds` bounds the wait for another thread of this process to
    finish its statement or transaction on the same file. Remote databases go
    through `tracker.registry.hrana` instead, because libsql_experimental 0.0.55
    sets no timeout on remote requests and holds the GIL while it waits.
    """
    import libsql_experimental  # optional dependency: pip install tracker-platform[turso]

    try:
        raw = libsql_experimental.connect(path, isolation_level=None)
    except ValueError as error:
        raise _database_error(error) from error
    key = os.path.realpath(path)
    with _turn_locks_guard:
        lock = _turn_locks.setdefault(key, threading.RLock())
    return LibsqlConnection(raw, lock, lock_timeout_seconds)


class LibsqlCursor:
    """The rows and counts of one statement, already run to completion."""

    def __init__(
        self,
        rows: list[tuple[Any, ...]],
        description: tuple[tuple[Any, ...], ...] | None,
        rowcount: int,
        lastrowid: int | None,
    ) -> None:
        self._rows = rows
        self._position = 0
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._position : self._position + size]
        self._position += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []


class LibsqlConnection:
    """A libsql_experimental connection with the sqlite3 behaviour the registry code relies on.

    `total_changes` is the sum of `rowcount` over the INSERT, UPDATE and DELETE
    statements run through this object, as in `HranaConnection`, where no
    server-side session lasts across statements.
    """

    def __init__(self, raw: Any, turn_lock: threading.RLock, lock_timeout_seconds: float) -> None:
        self._raw = raw
        self._turn_lock = turn_lock
        self._lock_timeout_seconds = lock_timeout_seconds
        self._holds_turn = False
        self.total_changes = 0

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> LibsqlCursor:
        values = _parameters(parameters)
        with self._turn():
            try:
                cursor = self._raw.execute(sql, values)
                # The library reports an empty description for statements without columns.
                description = cursor.description or None
                rows = cursor.fetchall() if description is not None else []
            except ValueError as error:
                raise _database_error(error) from error
        rowcount = -1
        if _DML.match(sql):
            # With RETURNING, each returned row is one changed row. Without it, the
            # library's count is exact because this cursor ran one statement.
            rowcount = len(rows) if description is not None else cursor.rowcount
            self.total_changes += rowcount
        return LibsqlCursor(rows, description, rowcount, cursor.lastrowid)

    def executemany(self, sql: str, seq_of_parameters: Any) -> LibsqlCursor:
        batches = [_parameters(parameters) for parameters in seq_of_parameters]
        if not batches:
            return LibsqlCursor([], None, 0 if _DML.match(sql) else -1, None)
        with self._turn():
            try:
                cursor = self._raw.executemany(sql, batches)
            except ValueError as error:
                raise _database_error(error) from error
        rowcount = -1
        if _DML.match(sql):
            rowcount = cursor.rowcount
            self.total_changes += rowcount
        return LibsqlCursor([], None, rowcount, cursor.lastrowid)

    def executescript(self, script: str) -> None:
        with self._turn():
            try:
                self._raw.cursor().executescript(script)
            except ValueError as error:
                raise _database_error(error) from error

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold this process's turn on the database for one statement, or until its transaction ends."""
        if not self._holds_turn:
            if not self._turn_lock.acquire(timeout=self._lock_timeout_seconds):
                raise sqlite3.OperationalError(
                    f"database is locked: another thread of this process kept it for more than"
                    f" {self._lock_timeout_seconds:g} s"
                )
            self._holds_turn = True
        try:
            yield
        finally:
            if not self._raw.in_transaction:
                self._release_turn()

    def _release_turn(self) -> None:
        if self._holds_turn:
            self._holds_turn = False
            self._turn_lock.release()

    @property
    def in_transaction(self) -> bool:
        return bool(self._raw.in_transaction)

    def commit(self) -> None:
        """Commit an open transaction. Without one it does nothing, as in sqlite3."""
        with self._turn():
            try:
                self._raw.commit()
            except ValueError as error:
                raise _database_error(error) from error

    def rollback(self) -> None:
        with self._turn():
            try:
                self._raw.rollback()
            except ValueError as error:
                raise _database_error(error) from error

    def close(self) -> None:
        """Close the connection and release this thread's turn. The database rolls back an open transaction."""
        try:
            self._raw.close()
        finally:
            self._release_turn()


def positional_parameters(parameters: Any) -> Sequence[Any]:
    """Return `parameters` if it is a sequence for `?` placeholders; raise ProgrammingError if not."""
    if isinstance(parameters, Mapping):
        raise sqlite3.ProgrammingError(
            "named parameters are not supported on libSQL: pass a sequence for ? placeholders"
        )
    if isinstance(parameters, str | bytes) or not isinstance(parameters, Sequence):
        raise sqlite3.ProgrammingError(
            f"parameters must be a sequence, got {type(parameters).__name__}"
        )
    return parameters


def _parameters(parameters: Any) -> tuple[Any, ...]:
    values = positional_parameters(parameters)
    return tuple(_value(value, index) for index, value in enumerate(values))


def _value(value: Any, index: int) -> Any:
    if value is None or isinstance(value, str | bytes | float):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        number = operator.index(value)
    except TypeError:
        raise sqlite3.ProgrammingError(
            f"parameter {index + 1} has unsupported type {type(value).__name__}:"
            " expected None, int, float, str or bytes"
        ) from None
    if abs(number) > _EXACT_FLOAT_INT:
        raise sqlite3.ProgrammingError(
            f"parameter {index + 1} is {number}: libsql_experimental binds integers outside"
            f" 32 bits as floats, so values beyond ±2**53 would lose precision"
        )
    return number


def _database_error(error: ValueError) -> sqlite3.Error:
    """Map a libsql_experimental ValueError to the sqlite3 exception sqlite3 raises for it."""
    message = str(error)
    if "constraint failed" in message:
        return sqlite3.IntegrityError(message)
    if "already closed" in message:
        return sqlite3.ProgrammingError(f"cannot operate on a closed connection: {message}")
    return sqlite3.OperationalError(message)
