"""Fixtures shared by every test package: ports, data directories and the PostgreSQL DSN."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

VECTORS = Path(__file__).parent / "vectors"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True, scope="session")
def registry_engine() -> Iterator[str]:
    """Engine of local registry files in this run: TRACKER_TEST_REGISTRY_ENGINE, default sqlite.

    Set it to `libsql` to run the registry tests in this process on libsql_experimental.
    Subprocesses such as `tracker serve` still open the file with sqlite3.
    """
    from tracker.registry import db

    engine = os.environ.get("TRACKER_TEST_REGISTRY_ENGINE", "sqlite")
    if engine not in db.ENGINES:
        raise pytest.UsageError(
            f"TRACKER_TEST_REGISTRY_ENGINE={engine!r} is invalid: expected sqlite or libsql"
        )
    previous, db.LOCAL_ENGINE = db.LOCAL_ENGINE, engine
    yield engine
    db.LOCAL_ENGINE = previous


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh platform data directory (local log, registry, Delta table, warm store)."""
    path = tmp_path / "tracker-data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the real PostgreSQL the hot tier tests use; skip-free: the server must run."""
    return os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A private schema in the test database, dropped afterwards, so tests never collide."""
    import asyncio

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(pg_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE SCHEMA "{name}"'))
    yield name
    asyncio.run(run(f'DROP SCHEMA "{name}" CASCADE'))
