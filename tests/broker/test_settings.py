"""Tests of the broker settings and the backend factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.broker import open_broker
from tracker.broker.iggy import IggyBroker
from tracker.broker.local import LocalBroker
from tracker.broker.noop import NoopBroker
from tracker.broker.settings import BrokerSettings
from tracker.errors import ConfigError
from tracker.settings import Env


def test_defaults_without_environment() -> None:
    settings = BrokerSettings.from_env(Env({}))

    assert settings.backend == "local"
    assert settings.partitions == 24
    assert settings.log_dir == Path(".tracker") / "log"
    assert settings.spool_dir == Path(".tracker") / "spool"
    assert settings.local_sync == "full"
    assert settings.reconnect_seconds == 30.0
    assert settings.iggy_url == "127.0.0.1:8090"
    assert settings.iggy_stream == "tracker"


def test_values_from_environment() -> None:
    settings = BrokerSettings.from_env(
        Env(
            {
                "BROKER": "iggy",
                "TRACKER_DATA_DIR": "/srv/tracker",
                "IGGY_PARTITIONS": "12",
                "IGGY_URL": "[::1]:9000",
                "LOCAL_LOG_SYNC": "normal",
                "PRODUCER_QUEUE_EVENTS": "500",
                "BROKER_RECONNECT_SECONDS": "2.5",
            }
        )
    )

    assert settings.backend == "iggy"
    assert settings.partitions == 12  # BROKER_PARTITIONS falls back to IGGY_PARTITIONS
    assert settings.log_dir == Path("/srv/tracker/log")
    assert settings.iggy_url == "[::1]:9000"
    assert settings.local_sync == "normal"
    assert settings.queue_events == 500
    assert settings.reconnect_seconds == 2.5


def test_broker_partitions_wins_over_iggy() -> None:
    settings = BrokerSettings.from_env(Env({"IGGY_PARTITIONS": "12", "BROKER_PARTITIONS": "8"}))

    assert settings.partitions == 8


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BROKER", "kafka", "expected one of local, iggy, noop"),
        ("BROKER_PARTITIONS", "0", "at least 1"),
        ("BROKER_PARTITIONS", "many", "expected an integer"),
        ("LOCAL_LOG_SYNC", "off", "expected one of normal, full"),
        ("IGGY_URL", "no-port", "expected host:port"),
        ("IGGY_URL", "host:99999", "expected host:port"),
        ("PRODUCER_QUEUE_EVENTS", "0", "at least 1"),
        ("PRODUCER_LINGER_MS", "nan", "finite number"),
        ("BROKER_RECONNECT_SECONDS", "0", "at least 0.01"),
        ("BROKER_SESSION_TIMEOUT_SECONDS", "-1", "at least 0.1"),
    ],
)
def test_invalid_value_names_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        BrokerSettings.from_env(Env({variable: value}))

    assert raised.value.variable == variable


@pytest.mark.parametrize(
    ("backend", "kind"), [("local", LocalBroker), ("iggy", IggyBroker), ("noop", NoopBroker)]
)
def test_factory_builds_configured_backend(backend: str, kind: type) -> None:
    broker = open_broker(BrokerSettings(backend=backend))

    assert isinstance(broker, kind)
    assert broker.backend == backend


def test_factory_rejects_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="expected one of local, iggy, noop"):
        open_broker(BrokerSettings(backend="kafka"))


async def test_noop_drops_everything() -> None:
    broker = NoopBroker(BrokerSettings(partitions=2))
    await broker.connect()

    await broker.publish("events", 0, [b"a", b"b"])

    assert broker.published_messages == 2
    assert await broker.poll("events", "g", 0, 10) == []
    assert await broker.end_offset("events", 0) is None
    assert await broker.assigned_partitions("events", "g", "m") == []
    assert await broker.healthy() is True


async def test_noop_connect_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="tracker.broker.noop"):
        await NoopBroker(BrokerSettings()).connect()

    assert "every published event is dropped" in caplog.text
