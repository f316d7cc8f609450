"""Fixtures for broker tests: settings on a temporary data directory and a connected local log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tracker._core import encode_record_batch
from tracker.broker.local import LocalBroker
from tracker.broker.settings import BrokerSettings

PARTITIONS = 4


@pytest.fixture
def settings(data_dir: Path) -> BrokerSettings:
    """Broker settings on a fresh data directory, 4 partitions and a 1 s session timeout."""
    return BrokerSettings(
        data_dir=data_dir,
        partitions=PARTITIONS,
        local_sync="normal",
        session_timeout_seconds=1.0,
        retention_interval_seconds=0.0,
        reconnect_seconds=0.05,
        linger_ms=1.0,
    )


@pytest.fixture
async def broker(settings: BrokerSettings) -> AsyncIterator[LocalBroker]:
    """A connected local broker, closed after the test."""
    local = LocalBroker(settings)
    await local.connect()
    yield local
    await local.close()


def batch(*labels: str) -> bytes:
    """Return a record batch with one small event per label."""
    return encode_record_batch([orjson.dumps({"event_id": label}) for label in labels])


def with_changes(settings: BrokerSettings, **changes: object) -> BrokerSettings:
    """Return a copy of `settings` with some fields changed."""
    return replace(settings, **changes)
