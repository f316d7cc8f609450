"""Fixtures for consumer tests: a real local broker in a temporary directory and event builders."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracker._core import decode_record_batch, encode_record_batch, partition_for, uuid7
from tracker.broker.base import Broker
from tracker.consumers.settings import ConsumerSettings
from tracker.settings import Env

PARTITIONS = 4
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
REPO = Path(__file__).resolve().parents[2]


def make_event(
    tenant: str = "acme",
    event_type: str = "click",
    *,
    timestamp: int = 1_770_704_294_008,
    user_agent: str = CHROME_LINUX,
    ip: str = "203.0.113.7",
    event_id: str | None = None,
    **params: str,
) -> dict[str, Any]:
    """Return one event object in the wire field order."""
    return {
        "event_id": event_id or uuid7(),
        "event_type": event_type,
        "timestamp": timestamp,
        "ip": ip,
        "user_agent": user_agent,
        "referer": "https://example.com/",
        "accept_language": "en-US",
        "request_path": "/t",
        "request_host": "track.example.com",
        "params": {"key_prefix": tenant, **params},
    }


def encode(events: Iterable[dict[str, Any]]) -> bytes:
    return encode_record_batch([orjson.dumps(event) for event in events])


def partition_of(tenant: str) -> int:
    return partition_for(tenant, PARTITIONS)


async def publish(
    broker: Broker, topic: str, events: list[dict[str, Any]], *, per_message: int = 100
) -> None:
    """Publish events to the partition of their tenant, `per_message` events per record batch."""
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_partition.setdefault(partition_of(event["params"]["key_prefix"]), []).append(event)
    for partition, group in by_partition.items():
        payloads = [encode(group[i : i + per_message]) for i in range(0, len(group), per_message)]
        await broker.publish(topic, partition, payloads)


async def read_topic(broker: Broker, topic: str) -> list[dict[str, Any]]:
    """Return every document of every message in `topic`, decoded, partition by partition."""
    documents = []
    for partition in range(broker.partitions):
        start = 0
        while True:
            messages = await broker.read(topic, partition, start, 100)
            if not messages:
                break
            for message in messages:
                documents.extend(
                    orjson.loads(line) for line in decode_record_batch(message.payload)
                )
            start = messages[-1].offset + 1
    return documents


def broker_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a broker and consumer on `data_dir`, on top of the current one."""
    env = {
        "BROKER": "local",
        "TRACKER_DATA_DIR": str(data_dir),
        "BROKER_PARTITIONS": str(PARTITIONS),
        "BROKER_SESSION_TIMEOUT_SECONDS": "2",
        "LOCAL_LOG_SYNC": "normal",
        "CONSUMER_HEARTBEAT_SECONDS": "0.2",
        "CONSUMER_IDLE_SLEEP_MS": "20",
        "CONSUMER_RETRY_BASE_MS": "10",
        "CONSUMER_RETRY_MAX_MS": "200",
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
    }
    env.update(extra)
    return env


async def open_local_broker(data_dir: Path, **extra: str) -> Broker:
    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings

    broker = open_broker(BrokerSettings.from_env(Env(broker_env(data_dir, **extra))))
    await broker.connect()
    return broker


def consumer_settings(data_dir: Path, **extra: str) -> ConsumerSettings:
    values = broker_env(data_dir, **extra)
    values.setdefault("CONSUMER_MEMBER", f"test-{uuid.uuid4().hex[:8]}")
    return ConsumerSettings.from_env(Env(values))


@pytest.fixture
async def broker(data_dir: Path) -> AsyncIterator[Broker]:
    """The real local broker backend on a fresh data directory."""
    instance = await open_local_broker(data_dir)
    yield instance
    await instance.close()


def start_consumer(name: str, data_dir: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start `tracker consume NAME` as a subprocess on `data_dir`."""
    env = {**os.environ, **broker_env(data_dir, **extra)}
    return subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "consume", name],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
