"""Fixtures of the query tests: one generated dataset loaded into all three tiers.

The dataset is loaded once per session: into a private PostgreSQL schema (the
hot writer's table), a Delta table in the archiver's layout, and a warm store
built by the real warm aggregator.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.query.dataset import BASE_MS, SPAN_MS, feed_warm, generate, load_cold, load_hot
from tracker.query.cold import ColdTier
from tracker.query.cursor import CursorCodec
from tracker.query.hot import HotTier
from tracker.query.warm import WarmTier

# The tiers see "now" as the end of the dataset, so retention checks do not depend on the date.
NOW_MS = BASE_MS + SPAN_MS


def fixed_clock() -> int:
    return NOW_MS


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def dataset() -> list[dict[str, Any]]:
    return generate()


@pytest.fixture(scope="session")
def codec() -> CursorCodec:
    return CursorCodec(b"q" * 32)


@pytest.fixture(scope="session")
def loaded_schema(pg_dsn: str, dataset: list[dict[str, Any]]) -> Iterator[str]:
    """A private schema, shared by this session's query tests, holding the dataset's hot table."""
    name = f"q_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(pg_dsn, f'CREATE SCHEMA "{name}"'))
    asyncio.run(load_hot(pg_dsn, name, dataset))
    yield name
    asyncio.run(_execute(pg_dsn, f'DROP SCHEMA "{name}" CASCADE'))


@pytest.fixture(scope="session")
def cold_uri(tmp_path_factory: pytest.TempPathFactory, dataset: list[dict[str, Any]]) -> str:
    uri = str(tmp_path_factory.mktemp("cold") / "delta" / "events")
    load_cold(uri, dataset)
    return uri


@pytest.fixture(scope="session")
def warm_dir(tmp_path_factory: pytest.TempPathFactory, dataset: list[dict[str, Any]]) -> Path:
    path = tmp_path_factory.mktemp("warm")
    asyncio.run(feed_warm(path, dataset))
    return path


@pytest.fixture
async def hot(pg_dsn: str, loaded_schema: str, codec: CursorCodec):
    tier = HotTier(pg_dsn, loaded_schema, codec, retention_days=7, timeout_seconds=5)
    yield tier
    await tier.close()


@pytest.fixture
def cold(cold_uri: str, codec: CursorCodec) -> ColdTier:
    return ColdTier(cold_uri, codec)


@pytest.fixture
def warm(warm_dir: Path) -> WarmTier:
    return WarmTier(warm_dir, retention_days=30, clock=fixed_clock)
