"""A connection that opens a new local-log file while another creates and writes it succeeds."""

from __future__ import annotations

import threading
from pathlib import Path

from tracker.broker._sqlite import PARTITION_SCHEMA, Database

ROUNDS = 200
WRITES = 20


def _race(path: Path) -> tuple[list[Database], list[BaseException]]:
    """Create and write `path` in one thread while another opens it; return both outcomes."""
    barrier = threading.Barrier(2)
    opened: list[Database] = []
    errors: list[BaseException] = []

    def write() -> None:
        barrier.wait()
        try:
            database = Database(path, PARTITION_SCHEMA, "normal", 30_000)
            opened.append(database)
            for offset in range(WRITES):
                with database.transaction() as connection:
                    connection.execute("INSERT INTO messages VALUES (?, 0, 1, x'00')", (offset,))
        except BaseException as error:
            errors.append(error)

    def open_file() -> None:
        barrier.wait()
        try:
            opened.append(Database(path, PARTITION_SCHEMA, "normal", 30_000))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write), threading.Thread(target=open_file)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return opened, errors


def test_open_while_file_is_created(tmp_path: Path) -> None:
    # Without the retry around the WAL pragma, a few rounds in a hundred failed with
    # "database is locked" even though the busy timeout is 30 s.
    for round_number in range(ROUNDS):
        opened, errors = _race(tmp_path / f"p{round_number:04d}.db")
        assert errors == [], f"round {round_number}"
        assert len(opened) == 2
        modes = {db.connection.execute("PRAGMA journal_mode").fetchone()[0] for db in opened}
        assert modes == {"wal"}
        for database in opened:
            database.close()
