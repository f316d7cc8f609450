"""Fixtures of the query tests: one generated dataset and the hot table loaded from it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.query.dataset import generate, load_hot


@pytest.fixture(scope="session")
def dataset() -> list[dict[str, Any]]:
    return generate()


@pytest.fixture
def hot_schema(pg_dsn: str, pg_schema: str, dataset: list[dict[str, Any]]) -> str:
    """A private schema holding the hot writer's `events` table filled with the dataset."""
    asyncio.run(load_hot(pg_dsn, pg_schema, dataset))
    return pg_schema
