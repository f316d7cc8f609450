"""A real `tracker sse` subprocess on a free loopback port, with tenants and API keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tracker._core import encode_record_batch, partition_for, uuid7

PARTITIONS = 4
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    keys: dict[str, str]
    admin_key: str
    env: dict[str, str]


def make_event(tenant: str, event_type: str = "click", **params: str) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "event_type": event_type,
        "timestamp": 1_770_704_294_008,
        "ip": "203.0.113.7",
        "user_agent": "test",
        "referer": "",
        "accept_language": "en",
        "request_path": "/t",
        "request_host": "track.example.com",
        "params": {"key_prefix": tenant, **params},
    }


async def publish(data_dir: Path, events: list[dict[str, Any]], *, per_message: int = 100) -> None:
    """Publish events to the `events` topic of the local broker in `data_dir`."""
    from tracker.broker import open_broker
    from tracker.broker.settings import BrokerSettings
    from tracker.settings import Env

    broker = open_broker(BrokerSettings.from_env(Env(broker_env(data_dir))))
    await broker.connect()
    try:
        by_partition: dict[int, list[bytes]] = {}
        for event in events:
            partition = partition_for(event["params"]["key_prefix"], PARTITIONS)
            by_partition.setdefault(partition, []).append(orjson.dumps(event))
        for partition, documents in by_partition.items():
            payloads = [
                encode_record_batch(documents[i : i + per_message])
                for i in range(0, len(documents), per_message)
            ]
            await broker.publish("events", partition, payloads)
    finally:
        await broker.close()


def broker_env(data_dir: Path) -> dict[str, str]:
    return {
        "BROKER": "local",
        "TRACKER_DATA_DIR": str(data_dir),
        "BROKER_PARTITIONS": str(PARTITIONS),
        "LOCAL_LOG_SYNC": "normal",
        "TRACKER_ENV_FILE": str(data_dir / "absent.env"),
    }


def create_keys(data_dir: Path, tenants: list[str]) -> dict[str, str]:
    from tracker.registry.api_keys import create_api_key
    from tracker.registry.db import Registry

    registry = Registry(data_dir / "registry.db")
    keys = {}
    for tenant in tenants:
        registry.connection().execute(
            "INSERT INTO tenants (key_prefix, created_at, updated_at) VALUES (?, 0, 0)", (tenant,)
        )
        keys[tenant] = create_api_key(registry, key_prefix=tenant, scope="read").raw_key
    registry.close()
    return keys


def start_gateway(data_dir: Path, **extra: str) -> Gateway:
    port = free_port()
    admin_key = "admin-" + uuid7()
    keys = create_keys(data_dir, ["acme", "globex"])
    env = {
        **os.environ,
        **broker_env(data_dir),
        "SSE_PORT": str(port),
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "ADMIN_API_KEY": admin_key,
        **extra,
    }
    log = open(data_dir / "sse.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "sse"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError((data_dir / "sse.log").read_text()[-2000:])
        try:
            if httpx.get(f"{url}/health", timeout=1).json()["status"] == "ok":
                break
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("SSE gateway did not become healthy within 30 s")
        time.sleep(0.1)
    return Gateway(url, data_dir, process, keys, admin_key, env)


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(10)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait(10)


@pytest.fixture
def gateway(data_dir: Path) -> Iterator[Gateway]:
    instance = start_gateway(data_dir)
    yield instance
    stop_gateway(instance)
