"""Connections to the registry database and its schema migrations.

The registry is a SQLite file by default (WAL mode, so the ingest service, the
API and the consumers can share it) or Turso/libSQL when `TURSO_URL` is set:
a libsql://, https:// or http:// URL opens the remote database over HTTP (every
statement goes to the server, so each process reads the others' changes at once),
and `file:PATH` opens a local file through the libSQL engine.
Migrations are the numbered `schema/NNN_name.sql` files beside this module,
applied once each, in order, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from tracker.errors import RegistryError
from tracker.registry.libsql import connect_libsql
from tracker.sqlite_wal import enable_wal

__all__ = ["ENGINES", "Registry", "connect", "migrate"]

BUSY_TIMEOUT_MS = 10_000
# Limit on one request to a remote libSQL database. sqld rolls back a transaction after 5 s,
# so a statement that waits for the lock of another transaction returns well before this.
REMOTE_TIMEOUT_SECONDS = 15.0
ENGINES = ("sqlite", "libsql")
# Engine for a local registry file when no TURSO_URL is given. The test suite sets it
# to "libsql" (TRACKER_TEST_REGISTRY_ENGINE) to run the registry tests on libSQL.
LOCAL_ENGINE = "sqlite"


def connect(
    path: str | Path,
    *,
    turso_url: str | None = None,
    turso_token: str | None = None,
    engine: str | None = None,
) -> Any:
    """Open one connection: Turso/libSQL when `turso_url` is given, else a local file at `path`.

    `engine` picks the library for the local file, "sqlite" (Python's sqlite3) or
    "libsql" (libsql_experimental); it defaults to `LOCAL_ENGINE`.
    Raises RegistryError for a `turso_url` of an unknown scheme or an unknown engine.
    """
    if turso_url:
        # Imported here because httpx added 0.1 s to the import of this module (python -X importtime).
        from tracker.registry.hrana import HranaConnection, is_remote_url

        if turso_url.startswith("file:"):
            return _open_local_libsql(Path(turso_url.removeprefix("file:")))
        if not is_remote_url(turso_url):
            raise RegistryError(
                f"invalid TURSO_URL {turso_url[:80]!r}: expected a libsql://, https://,"
                " http:// or file: URL"
            )
        return HranaConnection(
            turso_url, auth_token=turso_token, timeout_seconds=REMOTE_TIMEOUT_SECONDS
        )
    engine = engine or LOCAL_ENGINE
    if engine == "libsql":
        return _open_local_libsql(Path(path))
    if engine != "sqlite":
        raise RegistryError(f"unknown registry engine {engine!r}: expected sqlite or libsql")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    _configure_local(connection)
    return connection


def _open_local_libsql(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = connect_libsql(str(path), lock_timeout_seconds=BUSY_TIMEOUT_MS / 1000)
    _configure_local(connection)
    return connection


def _configure_local(connection: Any) -> None:
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    enable_wal(connection, BUSY_TIMEOUT_MS)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("tracker.registry") / "schema"
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


def migrate(connection: Any) -> list[str]:
    """Apply the migrations this database has not seen; return their names."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    applied = {row[0] for row in connection.execute("SELECT name FROM schema_migrations")}
    done = []
    for name, sql in _migration_files():
        if name in applied:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            # A second process may have applied it between our read and the lock.
            if connection.execute(
                "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
            ).fetchone():
                connection.execute("COMMIT")
                continue
            for statement in _split_statements(sql):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, strftime('%s','now'))",
                (name,),
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        done.append(name)
    return done


def _split_statements(sql: str) -> list[str]:
    # Migrations hold plain DDL with no semicolons inside literals or triggers. Whole-line
    # `--` comments are dropped first because their prose may contain semicolons.
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in code.split(";") if part.strip()]


class Registry:
    """A thread-safe handle on the registry database: one connection per thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        turso_url: str | None = None,
        turso_token: str | None = None,
        engine: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._turso_url = turso_url
        self._turso_token = turso_token
        self._engine = engine
        self._local = threading.local()
        migrate(self.connection())

    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(
                self.path,
                turso_url=self._turso_url,
                turso_token=self._turso_token,
                engine=self._engine,
            )
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Run the block in one IMMEDIATE transaction, rolled back on any exception."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
